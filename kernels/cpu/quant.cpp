// kernels/cpu/quant.cpp — see quant.h: the threaded drivers of the per-instruction-set kernels (quant_kernels.h;
// which set runs: isa.cpp).
#include "kernels/cpu/quant.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common/check.h"

#ifdef TESSERA_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace tessera::ops {
namespace {

// Rows of x below which every weight row is decoded in registers and dotted with all of them (its bytes read from
// memory once); above it, panels of w are dequantized to fp32 and multiplied by sgemm (compute-bound prefill).
constexpr int64_t kSmallM = 16;
// The fp32 panel of the sgemm path: at most this many floats (16 MiB), at least 64 rows.
constexpr int64_t kPanelFloats = int64_t{4} << 20;

void add_bias(float* y, int64_t m, int64_t n, int64_t ldy, const float* bias) {
  if (bias == nullptr) return;
  for (int64_t i = 0; i < m; ++i) {
    float* yr = y + i * ldy;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) yr[j] += bias[j];
  }
}

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Weight rows per task: 16 for decode batches (balance); for many rows of x, about four tasks per thread, so that
// each task walks a long run of weight rows with one block of x in L2.
int64_t rows_per_task(int64_t m, int64_t n) {
  if (m <= kSmallM) return 16;
  const int64_t threads = std::max(1, omp_get_max_threads());
  return std::max<int64_t>(16, round_up((n + 4 * threads - 1) / (4 * threads), 16));
}

// kInt8: x quantized once (quant.h), then the weight rows split among the threads.
void linear_int8(const float* x, int64_t m, const Tensor& w, float* y, int64_t ldy, const detail::CpuKernels& kern) {
  const int64_t k = w.cols, kpad = round_up(k, kern.int8_chunk);
  thread_local std::vector<int8_t> q;
  thread_local std::vector<float> dlane, sums;
  q.resize(static_cast<size_t>(m * kpad));
  dlane.resize(static_cast<size_t>(m * (kpad / kern.int8_lane_values)));
  const int64_t halves = round_up(k / 16, 16);
  sums.resize(static_cast<size_t>(m * halves));
  const detail::Int8Rows xq{q.data(), dlane.data(), sums.data(), m, k, kpad, halves};
  if (m <= kSmallM) {
    kern.quantize(x, 0, m, xq);
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < m; r += 16) kern.quantize(x, r, std::min(m, r + 16), xq);
  }
  // Each thread's weight row bytes, lane scales and offsets (quant_kernels.h's rows_int8).
  const size_t scratch_bytes = static_cast<size_t>(kpad + 4 * (kpad / kern.int8_lane_values) + 4 * halves + 256);
  const int64_t n = w.rows, step = rows_per_task(m, n);
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < n; j0 += step) {
    thread_local std::vector<unsigned char> scratch;
    if (scratch.size() < scratch_bytes) scratch.resize(scratch_bytes);
    void* aligned = scratch.data() + (64 - reinterpret_cast<uintptr_t>(scratch.data()) % 64) % 64;
    kern.rows_int8(xq, w, j0, std::min(n, j0 + step), y, ldy, aligned);
  }
}

}  // namespace

const char* activations_name(Activations a) { return a == Activations::kInt8 ? "int8" : "fp32"; }

const char* preferred_openblas_core() {
#ifdef TESSERA_HAVE_OPENBLAS
  if (!isa_supported(Isa::kAvx512)) return nullptr;
  const std::string core = openblas_get_corename();
  if (core == "Haswell" || core == "Zen") return "SkylakeX";
#endif
  return nullptr;
}

void dequantize_rows(const Tensor& w, int64_t r0, int64_t r1, float* out) {
  TESSERA_CHECK(r0 >= 0 && r0 <= r1 && r1 <= w.rows && w.cols % block_size(w.dtype) == 0);
  detail::active_kernels().dequantize(w, r0, r1, out);
}

void linear_typed(const float* x, int64_t m, const Tensor& w, const float* bias, float* y, int64_t ldy,
                  Activations act) {
  const int64_t n = w.rows, k = w.cols;
  if (k % block_size(w.dtype) != 0 || w.stride % block_size(w.dtype) != 0)
    throw Error(std::string("cpu backend: linear: a ") + dtype_name(w.dtype) + " weight of " + std::to_string(k) +
                " columns (stride " + std::to_string(w.stride) + ") is not whole blocks of " +
                std::to_string(block_size(w.dtype)));
  TESSERA_CHECK(ldy >= n);
  const detail::CpuKernels& kern = detail::active_kernels();
  if (act == Activations::kInt8 && is_block_type(w.dtype)) {
    linear_int8(x, m, w, y, ldy, kern);
    add_bias(y, m, n, ldy, bias);
    return;
  }
#ifdef TESSERA_HAVE_OPENBLAS
  if (m > kSmallM) {
    const int64_t panel = std::min(n, std::max<int64_t>(64, kPanelFloats / std::max<int64_t>(k, 1)));
    thread_local std::vector<float> buf;  // the calling thread's: the workers below write into it through `panel_f32`
    buf.resize(static_cast<size_t>(panel * k));
    float* const panel_f32 = buf.data();
    for (int64_t p0 = 0; p0 < n; p0 += panel) {
      const int64_t rows = std::min(panel, n - p0);
      const float* wp = nullptr;
      if (w.dtype == DType::F32) {
        wp = w.at<float>(p0);  // already fp32: no copy
      } else {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r += 16)
          kern.dequantize(w, p0 + r, p0 + std::min(rows, r + 16), panel_f32 + r * k);
        wp = panel_f32;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(rows),
                  static_cast<int>(k), 1.0f, x, static_cast<int>(k), wp,
                  static_cast<int>(w.dtype == DType::F32 ? w.stride : k), 0.0f, y + p0, static_cast<int>(ldy));
    }
    add_bias(y, m, n, ldy, bias);
    return;
  }
#endif
  // Few rows: weight rows split among the threads in chunks (a chunk's rows are consecutive in memory).
  constexpr int64_t kChunk = 16;
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) kern.rows(x, m, w, j0, std::min(n, j0 + kChunk), y, ldy);
  add_bias(y, m, n, ldy, bias);
}

}  // namespace tessera::ops
