// kernels/cuda/attention_decode_warp.cuh — decode attention for the head dims the split kernel
// (attention_decode.cuh) does not take: any head_dim <= 256, e.g. the tiny test models' 16, or 80 and 96.
//
// One warp per (sequence, query head); lane l holds dims l, l + 32, ... of the query and of the output
// accumulator; keys are visited one at a time with an online softmax (score: a warp reduction per key). No
// split, no workspace, no alignment needs beyond the element's own: simple and latency-bound. gpu::attention_decode
// runs it when plan_attention_decode says DecodeKernel::WarpPerHead; an empty key range writes zeros.
// In/out as attention_decode (cuda_ops.h).
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {

constexpr int64_t kDecodeWarpMaxHeadDim = 256;

Status launch_attention_decode_warp(const void* q, int64_t q_stride, const void* cache_k, const void* cache_v,
                                    const int32_t* slots, const int32_t* starts, const int32_t* lens, void* out,
                                    int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx,
                                    float scale, DType dtype, cudaStream_t stream);

}  // namespace tessera::gpu
