// kernels/cuda/norm.cuh — RMSNorm and LayerNorm, optionally fused with the residual add, for any hidden size.
//
// Dispatch (norm.cu): one block per row. When dim is a multiple of 8 (16-bit types) / 4 (fp32) and every
// pointer is 16-byte aligned, rows of up to 4096 vectors (32768 bf16/fp16, 16384 fp32) stay in registers
// (`cached`, NV in {1, 2, 4} vectors per thread, one read of the input; NV = 8 needed ~90 registers, too many
// for 1024 threads); rows of up to 160 KB (65536+ bf16, 40960 fp32) stay in shared memory (`shared row`,
// also one read); longer or unaligned rows take the `loop` path, which re-reads the row from global memory
// (L2) per pass. RMS takes two passes over the row, LayerNorm three (sum, then the sum of squared deviations
// around the exact mean, then output): no one-pass variance that cancels.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {

enum class NormPath { kCachedNV1, kCachedNV2, kCachedNV4, kSharedRow, kLoopVec, kLoopScalar };

// The path the launcher takes for these arguments (tests use it to cover every branch). f32_row: x / residual
// are fp32 (the *_mixed ops) while delta, gamma, beta and y are `dtype`: the register paths are the same (the
// row is held as fp32 either way), the shared-memory row holds fp32 and so fits up to 40960 elements; wider
// rows take the loop path (65536: the fp32 row, 256 KB, exceeds the 227 KB a block may have).
NormPath norm_path(int64_t dim, DType dtype, bool all_aligned16, bool f32_row = false);

// x: [rows, dim] (ignored when residual != nullptr); residual, delta: [rows, dim] (residual += delta first);
// gamma, beta: [dim] (beta nullptr: RMSNorm); y: [rows, dim]. f32_row: x and residual are float (see above).
Status launch_norm(const void* x, void* residual, const void* delta, const void* gamma, const void* beta, void* y,
                   int64_t rows, int64_t dim, float eps, bool layer, DType dtype, cudaStream_t stream,
                   bool f32_row = false);

}  // namespace tessera::gpu
