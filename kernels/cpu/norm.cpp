// kernels/cpu/norm.cpp — RMSNorm and LayerNorm, alone or fused with the residual add, any hidden size.
// Statistics are accumulated in double: the reference the GPU kernels are held to.
#include <cmath>

#include "kernels/ops.h"

namespace tessera::ops {
namespace {

void rms_row(const float* x, const float* gamma, float* y, int64_t dim, float eps) {
  double ss = 0.0;
  for (int64_t c = 0; c < dim; ++c) ss += static_cast<double>(x[c]) * x[c];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
#pragma omp simd
  for (int64_t c = 0; c < dim; ++c) y[c] = x[c] * inv * gamma[c];
}

void layer_row(const float* x, const float* gamma, const float* beta, float* y, int64_t dim, float eps) {
  double sum = 0.0;
  for (int64_t c = 0; c < dim; ++c) sum += x[c];
  const double mean = sum / static_cast<double>(dim);
  double var = 0.0;
  for (int64_t c = 0; c < dim; ++c) var += (x[c] - mean) * (x[c] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(dim) + eps));
  const float meanf = static_cast<float>(mean);
#pragma omp simd
  for (int64_t c = 0; c < dim; ++c) y[c] = (x[c] - meanf) * inv * gamma[c] + beta[c];
}

void add_row(float* residual, const float* delta, int64_t dim) {
#pragma omp simd
  for (int64_t c = 0; c < dim; ++c) residual[c] += delta[c];
}

}  // namespace

void rms_norm(const float* x, const float* gamma, float* y, int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) rms_row(x + r * dim, gamma, y + r * dim, dim, eps);
}

void add_rms_norm(float* residual, const float* delta, const float* gamma, float* y, int64_t rows, int64_t dim,
                  float eps) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    add_row(residual + r * dim, delta + r * dim, dim);
    rms_row(residual + r * dim, gamma, y + r * dim, dim, eps);
  }
}

void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) layer_row(x + r * dim, gamma, beta, y + r * dim, dim, eps);
}

void add_layer_norm(float* residual, const float* delta, const float* gamma, const float* beta, float* y, int64_t rows,
                    int64_t dim, float eps) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    add_row(residual + r * dim, delta + r * dim, dim);
    layer_row(residual + r * dim, gamma, beta, y + r * dim, dim, eps);
  }
}

}  // namespace tessera::ops
