// kernels/cuda/activation.cuh — bias + GELU(tanh) in place, and SiLU(gate) · up.
// Elementwise, grid-stride over 16-byte vectors when the row length and pointers allow, scalar otherwise.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {
// x: [rows, cols] in place; bias: [cols] or nullptr.
Status launch_add_bias_gelu(void* x, const void* bias, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream);
// gate_up: [rows, 2 * ffn]; out: [rows, ffn].
Status launch_silu_mul(const void* gate_up, void* out, int64_t rows, int64_t ffn, DType dtype, cudaStream_t stream);
// y: [rows, cols] += bias[cols] (the bias epilogue of linear()).
Status launch_add_bias(void* y, const void* bias, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream);
}  // namespace tessera::gpu
