// kernels/cuda/attention_prefill.cuh — causal prefill attention of a left-padded group, flash-attention style.
//
// Two kernels behind one launcher:
//   kMma: F16/BF16, head_dim 64 or 128, 16-byte aligned K/V rows. Block = 4 warps = 64 query rows of one
//         (sequence, head); K/V tiles of 64 keys stream through shared memory with cp.async (2 stages);
//         S = Q·Kᵀ and O += P·V on tensor cores (mma.sync m16n8k16, fp32 accumulators), online softmax in
//         registers (FA2 layout: P never leaves registers).
//   kFma: everything else (F32 check mode, other head dims <= 256, unaligned strides). Block = 8 warps = 8 query
//         rows; tiles of 32 keys in shared memory as fp32; a lane scores one key, then owns head_dim/32 outputs.
// Both: key tiles start at the row's first real key (pad keys are never loaded), stop at the block's last query
// row (causal), and mask j > i inside the diagonal tile; pad query rows get zeros; memory is O(tile).
// The grid puts heads fastest and the longest (last) query tiles first, so the causal triangle's heavy blocks
// start early.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {

enum class PrefillPath { kMma, kFma };

PrefillPath prefill_path(const void* q, int64_t q_stride, const void* k, const void* v, int64_t kv_stride,
                         const void* out, int64_t head_dim, DType dtype);

Status launch_attention_prefill(const void* q, int64_t q_stride, const void* k, const void* v, int64_t kv_stride,
                                const int32_t* pad, void* out, int64_t B, int64_t L, int64_t n_heads,
                                int64_t n_kv_heads, int64_t head_dim, float scale, DType dtype, cudaStream_t stream);

}  // namespace tessera::gpu
