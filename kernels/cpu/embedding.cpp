// kernels/cpu/embedding.cpp — token (+ learned position) embedding lookup.
#include <cstring>

#include "kernels/ops.h"

namespace tessera::ops {

void embedding(const int32_t* ids, const int32_t* pos, const float* wte, const float* wpe, float* out, int64_t n,
               int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + i * dim;
    std::memcpy(o, wte + static_cast<int64_t>(ids[i]) * dim, sizeof(float) * dim);
    if (wpe != nullptr) {
      const float* p = wpe + static_cast<int64_t>(pos[i]) * dim;
#pragma omp simd
      for (int64_t c = 0; c < dim; ++c) o[c] += p[c];
    }
  }
}

}  // namespace tessera::ops
