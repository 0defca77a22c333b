// kernels/cuda/rope.cuh — rotary position embedding, Hugging Face rotate-half layout, in place.
// x: rows of stride row_stride elements, head h at x + row * row_stride + h * head_dim; pos: [rows] int32.
// The angle is computed in fp32 exactly as transformers (and kernels/cpu/rope.cpp) do: inv_freq =
// 1 / theta^(2d / head_dim), angle = float(pos) * inv_freq, then accurate sincosf (not the fast intrinsics).
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {
Status launch_rope(void* x, const int32_t* pos, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t row_stride,
                   float theta, DType dtype, cudaStream_t stream);
}  // namespace tessera::gpu
