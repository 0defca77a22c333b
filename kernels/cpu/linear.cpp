// kernels/cpu/linear.cpp — y = x · wᵀ + bias on the CPU: OpenBLAS sgemm where installed, else blocked loops.
#include "kernels/ops.h"

#ifdef TESSERA_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace tessera::ops {

void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
#ifdef TESSERA_HAVE_OPENBLAS
  if (m == 1) {
    // GEMV: OpenBLAS's sgemm with m == 1 takes a slower path than sgemv on a row-major matrix.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), 1.0f, w, static_cast<int>(k), x,
                1, 0.0f, y, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                1.0f, x, static_cast<int>(k), w, static_cast<int>(k), 0.0f, y, static_cast<int>(n));
  }
#else
  // [m, k] x [n, k]ᵀ: blocks of 4 output rows of w share each read of x's row.
  constexpr int64_t kBlockN = 4;
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < (n + kBlockN - 1) / kBlockN; ++nb) {
    const int64_t n0 = nb * kBlockN;
    const int64_t n1 = n0 + kBlockN < n ? n0 + kBlockN : n;
    for (int64_t i = 0; i < m; ++i) {
      const float* xr = x + i * k;
      for (int64_t j = n0; j < n1; ++j) {
        const float* wr = w + j * k;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t t = 0; t < k; ++t) acc += xr[t] * wr[t];
        y[i * n + j] = acc;
      }
    }
  }
#endif
  if (bias != nullptr) {
    for (int64_t i = 0; i < m; ++i) {
      float* yr = y + i * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) yr[j] += bias[j];
    }
  }
}

}  // namespace tessera::ops
