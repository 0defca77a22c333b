// kernels/cpu/quant.cpp — see quant.h: which instruction set runs (CPUID and XCR0), and the threaded drivers of
// the per-set kernels (quant_kernels.h).
#include "kernels/cpu/quant.h"

#include <cpuid.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/check.h"

#ifdef TESSERA_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace tessera::ops {
namespace {

uint64_t xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

Isa detect() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::kGeneric;
  __cpuid(1, a, b, c, d);
  const bool osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
  if (!osxsave || !avx) return Isa::kGeneric;
  const uint64_t x = xcr0();
  const bool os_avx = (x & 0x6) == 0x6;       // SSE and AVX state
  const bool os_avx512 = (x & 0xe6) == 0xe6;  // and opmask, ZMM_Hi256, Hi16_ZMM
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
             avx512vl = (b >> 31) & 1;
  if (!os_avx || !avx2 || !fma || !f16c) return Isa::kGeneric;
  if (os_avx512 && avx512f && avx512dq && avx512bw && avx512vl) return Isa::kAvx512;
  return Isa::kAvx2;
}

Isa parse_isa(const std::string& s) {
  if (s == "generic") return Isa::kGeneric;
  if (s == "avx2") return Isa::kAvx2;
  if (s == "avx512") return Isa::kAvx512;
  throw Error("$TESSERA_CPU_ISA: unknown instruction set '" + s + "' (expected generic, avx2 or avx512)");
}

Isa initial_isa() {
  const Isa best = best_isa();
  const char* env = std::getenv("TESSERA_CPU_ISA");
  if (env == nullptr || *env == '\0') return best;
  const Isa want = parse_isa(env);
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;  // a cap, never more than the CPU has
}

Isa& current() {
  static Isa isa = initial_isa();
  return isa;
}

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

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kGeneric:
      return "generic";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

Isa best_isa() {
  static const Isa best = detect();
  return best;
}

Isa active_isa() { return current(); }

void set_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa()))
    throw Error(std::string("cpu: instruction set ") + isa_name(isa) +
                " is not available here (best: " + isa_name(best_isa()) + ")");
  current() = isa;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(best_isa()); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

const detail::CpuKernels& detail::kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return kAvx512Kernels;
    case Isa::kAvx2:
      return kAvx2Kernels;
    case Isa::kGeneric:
      break;
  }
  return kGenericKernels;
}

void dequantize_rows(const Tensor& w, int64_t r0, int64_t r1, float* out) {
  TESSERA_CHECK(r0 >= 0 && r0 <= r1 && r1 <= w.rows && w.cols % block_size(w.dtype) == 0);
  detail::kernels_for(active_isa()).dequantize(w, r0, r1, out);
}

void linear_typed(const float* x, int64_t m, const Tensor& w, const float* bias, float* y, int64_t ldy) {
  const int64_t n = w.rows, k = w.cols;
  if (k % block_size(w.dtype) != 0 || w.stride % block_size(w.dtype) != 0)
    throw Error(std::string("cpu backend: linear: a ") + dtype_name(w.dtype) + " weight of " + std::to_string(k) +
                " columns (stride " + std::to_string(w.stride) + ") is not whole blocks of " +
                std::to_string(block_size(w.dtype)));
  TESSERA_CHECK(ldy >= n);
  const detail::CpuKernels& kern = detail::kernels_for(active_isa());
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
