// kernels/cpu/activation.cpp — GPT-2's bias + GELU (tanh form) and Llama's SiLU(gate) · up.
#include <cmath>

#include "kernels/ops.h"

namespace tessera::ops {

void add_bias_gelu(float* x, const float* bias, int64_t rows, int64_t cols) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = xr[c] + (bias != nullptr ? bias[c] : 0.0f);
      xr[c] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
    }
  }
}

void silu_mul(const float* gate_up, float* out, int64_t rows, int64_t ffn) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gate_up + r * 2 * ffn;
    const float* u = g + ffn;
    float* o = out + r * ffn;
    for (int64_t c = 0; c < ffn; ++c) o[c] = g[c] / (1.0f + std::exp(-g[c])) * u[c];
  }
}

}  // namespace tessera::ops
