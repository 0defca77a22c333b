// kernels/cpu/kv_write.cpp — scatter the step's K and V rows into their sequences' cache slots.
#include <cstring>

#include "kernels/ops.h"

namespace tessera::ops {

void kv_write(const float* k, const float* v, int64_t src_stride, const int32_t* slots, const int32_t* positions,
              int64_t n_tokens, float* cache_k, float* cache_v, int64_t n_kv_heads, int64_t max_ctx, int64_t head_dim) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (slots[t] < 0) continue;  // a pad column
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const int64_t dst = ((static_cast<int64_t>(slots[t]) * n_kv_heads + h) * max_ctx + positions[t]) * head_dim;
      std::memcpy(cache_k + dst, k + t * src_stride + h * head_dim, sizeof(float) * head_dim);
      std::memcpy(cache_v + dst, v + t * src_stride + h * head_dim, sizeof(float) * head_dim);
    }
  }
}

}  // namespace tessera::ops
