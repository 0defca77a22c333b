// worker/cuda/decode_attention_generic.h — decode attention for the head dims kernels/cuda's flash-decoding
// kernel does not take (it runs 64, 128 and 256), e.g. the tiny oracle models' head_dim 16.
//
// Same contract as gpu::attention_decode (one query token per sequence against keys [starts[b], starts[b] +
// lens[b]) of slot slots[b]; fp32 arithmetic, F32/F16/BF16 storage) for any head_dim <= 256. One warp per
// (sequence, query head), online softmax over the keys one at a time: simple and slow; the engine uses it only
// where the fast kernel cannot run. (It belongs in kernels/cuda/ with a CPU-reference test; it lives here
// because that folder was closed when the engine was written.) Reentrant.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {

constexpr int64_t kGenericDecodeMaxHeadDim = 256;

// q: [B] rows of stride q_stride holding [n_heads, head_dim]; cache_k, cache_v: [n_slots, n_kv_heads, max_ctx,
// head_dim]; slots, starts, lens: [B] int32 (device); out: [B, n_heads, head_dim].
Status attention_decode_generic(const void* q, int64_t q_stride, const void* cache_k, const void* cache_v,
                                const int32_t* slots, const int32_t* starts, const int32_t* lens, void* out, int64_t B,
                                int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale,
                                DType dtype, cudaStream_t stream);

// dst[i] = (dtype) src[i]: fp32 device data to the storage dtype (weights upload). src, dst: [n] device.
Status convert_from_f32(const float* src, void* dst, int64_t n, DType dtype, cudaStream_t stream);

}  // namespace tessera::gpu
