// kernels/cuda/kv_write.cuh — scatter a step's K and V rows into their sequences' cache slots.
// k, v: [n_tokens] rows of stride src_stride holding [n_kv_heads, head_dim]; slots, positions: [n_tokens]
// (slot < 0: a pad column, skipped); cache_k, cache_v: [n_slots, n_kv_heads, max_ctx, head_dim].
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {
Status launch_kv_write(const void* k, const void* v, int64_t src_stride, const int32_t* slots, const int32_t* positions,
                       int64_t n_tokens, void* cache_k, void* cache_v, int64_t n_kv_heads, int64_t max_ctx,
                       int64_t head_dim, DType dtype, cudaStream_t stream);
}  // namespace tessera::gpu
