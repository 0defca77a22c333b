// kernels/cpu/rope.cpp — rotary position embedding, Hugging Face rotate-half layout:
// for d < head_dim/2, (x[d], x[d + half]) is rotated by pos · theta^(-2d/head_dim).
#include <cmath>

#include "kernels/ops.h"

namespace tessera::ops {

void rope(float* x, const int32_t* pos, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t row_stride,
          float theta) {
  const int64_t half = head_dim / 2;
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < half; ++d) {
      // Same float32 arithmetic as transformers' inv_freq and outer product, so angles match to the last bit
      // at long positions, where a double-precision angle would drift from the reference.
      const float inv_freq = 1.0f / std::pow(theta, static_cast<float>(2 * d) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(pos[r]) * inv_freq;
      const float c = std::cos(angle), s = std::sin(angle);
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + r * row_stride + h * head_dim;
        const float a = v[d], b = v[d + half];
        v[d] = a * c - b * s;
        v[d + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace tessera::ops
