// kernels/cuda/convert.cuh — fp32 to the storage type (weight upload), round to nearest even.
// Grid-stride over 16-byte fp32 vectors when the pointers allow, scalar otherwise; the n % 4 tail is scalar.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {
// src: [n] fp32; dst: [n] in dtype.
Status launch_convert_from_f32(const float* src, void* dst, int64_t n, DType dtype, cudaStream_t stream);
}  // namespace tessera::gpu
