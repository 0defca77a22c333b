// kernels/cuda/embedding.cuh — token (+ learned position) embedding gather.
// ids, pos: [n] int32 on the device; wte: [vocab, dim]; wpe: [n_positions, dim] or nullptr; out: [n, dim].
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {
Status launch_embedding(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, void* out, int64_t n,
                        int64_t dim, DType dtype, cudaStream_t stream);
}  // namespace tessera::gpu
