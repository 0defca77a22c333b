// kernels/cuda/linear.cuh — y = x · wᵀ (+ bias) through cuBLAS (tensor cores for F16/BF16, fp32 accumulation).
// The row-major product y[m, n] = x[m, k] · w[n, k]ᵀ is the column-major product yᵀ = op_T(w) · x, so no copy or
// transpose is made. The bias is a separate elementwise pass (activation.cu's add_bias).
#pragma once

#include <cublas_v2.h>

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {
// The cuBLAS handle of the calling host thread on the current device, created on first use (never destroyed:
// handles are reclaimed with the process, after the CUDA context, which avoids teardown-order crashes).
Status cublas_handle(cublasHandle_t* out);
}  // namespace tessera::gpu
