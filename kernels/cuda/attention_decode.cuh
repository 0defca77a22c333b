// kernels/cuda/attention_decode.cuh — decode attention over per-sequence cache ranges, split along the sequence
// (flash-decoding).
//
// Plan (host, from shapes alone; plan_attention_decode in cuda_ops.h): a block serves `heads_per_block` query heads
// that share one KV head (GQA: K/V are read once for the group) and one of `n_splits` key ranges; n_splits is
// chosen so that B * (n_heads / heads_per_block) * n_splits gives ~8 blocks per SM, capped by max_ctx / 64.
// Each sequence's own length is divided among the splits on the device (chunk = ceil(len / n_splits), rounded up
// to the 64-key tile), so a short sequence under a large max_ctx only uses the splits it needs.
// Split kernel: 128 threads; D / W threads cooperate on one key row (16- or 32-byte loads), scores of a 64-key
// tile go to shared memory, an online softmax per head, then P·V with the same row ownership; partial (o, m, l)
// per split go to the workspace, and a combine kernel merges them. With n_splits == 1 the split kernel writes
// the output directly. The split kernel takes head_dim 64, 128 and 256; for any other head_dim <= 256 the op entry
// runs attention_decode_warp.cuh instead (the plan says which: DecodePlan::kernel).
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {

Status launch_attention_decode(const void* q, int64_t q_stride, const void* cache_k, const void* cache_v,
                               const int32_t* slots, const int32_t* starts, const int32_t* lens, void* out, int64_t B,
                               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale,
                               const DecodePlan& plan, void* workspace, DType dtype, cudaStream_t stream);

}  // namespace tessera::gpu
