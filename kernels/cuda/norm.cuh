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

// The path the launcher takes for these arguments (tests use it to cover every branch).
NormPath norm_path(int64_t dim, DType dtype, bool all_aligned16);

// x: [rows, dim] (ignored when residual != nullptr); residual, delta: [rows, dim] (residual += delta first);
// gamma, beta: [dim] (beta nullptr: RMSNorm); y: [rows, dim].
Status launch_norm(const void* x, void* residual, const void* delta, const void* gamma, const void* beta, void* y,
                   int64_t rows, int64_t dim, float eps, bool layer, DType dtype, cudaStream_t stream);

}  // namespace tessera::gpu
