// kernels/cpu/quant_kernels.h — the typed-weight kernels of quant.h, written once over GCC vector types
// and compiled once per instruction set (quant_generic.cpp: SSE2, quant_avx2.cpp, quant_avx512.cpp, each with its
// own -m flags): vectors of the set's native width kW (4, 8 or 16 floats), 32-value groups as kV = 32 / kW of them.
//
// The files are compiled with -ffp-contract=fast so that a·b + c becomes one FMA where the set has it.
// One-definition hazard: an inline function of another header used here could be emitted with this file's
// instructions and picked by the linker for every caller; so everything here lives in an anonymous namespace and
// only reads Tensor's fields (block sizes are constant-evaluated).
#pragma once

#include <cstdint>
#include <cstring>

#include <immintrin.h>

#include "kernels/cpu/quant.h"

namespace tessera::ops {
namespace {

// The native vector: kW floats (one zmm, ymm or xmm register); a group of 32 values is kV of them.
#if defined(__AVX512F__)
constexpr int kW = 16;
#elif defined(__AVX2__)
constexpr int kW = 8;
#else
constexpr int kW = 4;
#endif
constexpr int kV = 32 / kW;
typedef float fv __attribute__((vector_size(4 * kW)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));

template <typename V>
inline V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V>
inline fv as_fv(const V& v) {
  static_assert(sizeof(V) == sizeof(fv));
  return load<fv>(&v);
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: normalize
    int e = -1;
    uint32_t m = man;
    do {
      ++e;
      m <<= 1;
    } while ((m & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((m & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline float half_at(const uint8_t* p) {
#if defined(__F16C__)
  return _cvtsh_ss(load<uint16_t>(p));
#else
  return half_to_float(load<uint16_t>(p));
#endif
}

// kW fp16 values at p.
inline fv halves(const uint8_t* p) {
#if defined(__AVX512F__)
  return as_fv(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#elif defined(__AVX2__)
  return as_fv(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#else
  fv v;
  for (int i = 0; i < kW; ++i) v[i] = half_to_float(load<uint16_t>(p + 2 * i));
  return v;
#endif
}

// kW bf16 values at p: each the high half of an fp32.
inline fv bf16s(const uint8_t* p) {
#if defined(__AVX512F__)
  return as_fv(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
#elif defined(__AVX2__)
  return as_fv(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
#else
  const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return as_fv(_mm_unpacklo_epi16(_mm_setzero_si128(), h));
#endif
}

// 16 bytes (unsigned or signed) as 16 / kW float vectors, in order. Explicit widening instructions: GCC 12
// scalarizes __builtin_convertvector from 8-bit lanes.
template <bool Signed>
inline void widen(u8x16 q, fv* out) {
  const __m128i b = load<__m128i>(&q);
#if defined(__AVX512F__)
  out[0] = as_fv(_mm512_cvtepi32_ps(Signed ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b)));
#elif defined(__AVX2__)
  const __m128i c = _mm_srli_si128(b, 8);
  out[0] = as_fv(_mm256_cvtepi32_ps(Signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b)));
  out[1] = as_fv(_mm256_cvtepi32_ps(Signed ? _mm256_cvtepi8_epi32(c) : _mm256_cvtepu8_epi32(c)));
#else  // SSE2: interleave to 16 and 32 bits, then shift the sign in (or zeros)
  __m128i w[2];
  if (Signed) {
    w[0] = _mm_srai_epi16(_mm_unpacklo_epi8(b, b), 8);
    w[1] = _mm_srai_epi16(_mm_unpackhi_epi8(b, b), 8);
  } else {
    w[0] = _mm_unpacklo_epi8(b, _mm_setzero_si128());
    w[1] = _mm_unpackhi_epi8(b, _mm_setzero_si128());
  }
  for (int i = 0; i < 2; ++i) {
    const __m128i lo =
        Signed ? _mm_srai_epi32(_mm_unpacklo_epi16(w[i], w[i]), 16) : _mm_unpacklo_epi16(w[i], _mm_setzero_si128());
    const __m128i hi =
        Signed ? _mm_srai_epi32(_mm_unpackhi_epi16(w[i], w[i]), 16) : _mm_unpackhi_epi16(w[i], _mm_setzero_si128());
    out[2 * i] = as_fv(_mm_cvtepi32_ps(lo));
    out[2 * i + 1] = as_fv(_mm_cvtepi32_ps(hi));
  }
#endif
}

// Q4_K: group j's 6-bit scale and min from the 12 packed bytes.
inline void q4k_scale_min(const uint8_t* s, int j, float* sc, float* mn) {
  if (j < 4) {
    *sc = static_cast<float>(s[j] & 63);
    *mn = static_cast<float>(s[j + 4] & 63);
  } else {
    *sc = static_cast<float>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    *mn = static_cast<float>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

// Group g (values [32g, 32g + 32)) of a weight row as kV vectors: w[i] holds values 32g + kW·i … + kW − 1.
template <DType T>
inline void decode(const uint8_t* row, int64_t g, fv* w) {
  constexpr int kHalf = kV / 2;  // vectors per 16 values
  if constexpr (T == DType::F32) {
    for (int i = 0; i < kV; ++i) w[i] = load<fv>(row + 128 * g + 4 * kW * i);
  } else if constexpr (T == DType::F16) {
    for (int i = 0; i < kV; ++i) w[i] = halves(row + 64 * g + 2 * kW * i);
  } else if constexpr (T == DType::BF16) {
    for (int i = 0; i < kV; ++i) w[i] = bf16s(row + 64 * g + 2 * kW * i);
  } else if constexpr (T == DType::Q8_0) {
    const uint8_t* b = row + 34 * g;
    const float d = half_at(b);
    widen<true>(load<u8x16>(b + 2), w);
    widen<true>(load<u8x16>(b + 18), w + kHalf);
    for (int i = 0; i < kV; ++i) w[i] *= d;
  } else if constexpr (T == DType::Q4_0) {
    const uint8_t* b = row + 18 * g;
    const float d = half_at(b);
    const u8x16 q = load<u8x16>(b + 2);
    widen<false>(q & 15, w);
    widen<false>(q >> 4, w + kHalf);
    for (int i = 0; i < kV; ++i) w[i] = (w[i] - 8.0f) * d;
  } else if constexpr (T == DType::Q4_1) {
    const uint8_t* b = row + 20 * g;
    const float d = half_at(b), m = half_at(b + 2);
    const u8x16 q = load<u8x16>(b + 4);
    widen<false>(q & 15, w);
    widen<false>(q >> 4, w + kHalf);
    for (int i = 0; i < kV; ++i) w[i] = w[i] * d + m;
  } else if constexpr (T == DType::Q4_K) {
    const uint8_t* b = row + 144 * (g / 8);
    const int j = static_cast<int>(g % 8);
    float sc, mn;
    q4k_scale_min(b + 4, j, &sc, &mn);
    const float d = half_at(b) * sc, m = half_at(b + 2) * mn;
    const uint8_t* qs = b + 16 + 32 * (j / 2);
    const u8x16 a = load<u8x16>(qs), c = load<u8x16>(qs + 16);
    widen<false>((j & 1) ? a >> 4 : a & 15, w);
    widen<false>((j & 1) ? c >> 4 : c & 15, w + kHalf);
    for (int i = 0; i < kV; ++i) w[i] = w[i] * d - m;
  } else {  // Q6_K
    const uint8_t* b = row + 210 * (g / 8);
    const int sub = static_cast<int>(g % 8), n = sub / 4, qd = sub % 4;
    const uint8_t* ql = b + 64 * n + 32 * (qd & 1);
    const uint8_t* qh = b + 128 + 32 * n;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * n + 2 * qd;
    const float d = half_at(b + 208);
    const int shift_l = qd >= 2 ? 4 : 0, shift_h = 2 * qd;
    for (int half = 0; half < 2; ++half) {
      const u8x16 l = load<u8x16>(ql + 16 * half), h = load<u8x16>(qh + 16 * half);
      widen<false>(((l >> shift_l) & 15) | (((h >> shift_h) & 3) << 4), w + kHalf * half);
      const float s = d * static_cast<float>(sc[half]);
      for (int i = 0; i < kHalf; ++i) w[kHalf * half + i] = (w[kHalf * half + i] - 32.0f) * s;
    }
  }
}

inline float hsum(fv v) {
  float s = 0.0f;
  for (int i = 0; i < kW; ++i) s += v[i];
  return s;
}

// y[i, j] for rows i < MR of x (row stride k) and one weight row: each group decoded once for all MR rows.
template <DType T, int MR>
inline void dot_row(const float* x, int64_t k, const uint8_t* wrow, float* out) {
  fv acc[MR];
  for (int r = 0; r < MR; ++r) acc[r] = fv{};
  const int64_t groups = k / 32;
  for (int64_t g = 0; g < groups; ++g) {
    fv w[kV];
    decode<T>(wrow, g, w);
    for (int r = 0; r < MR; ++r) {
      const float* xr = x + r * k + 32 * g;
      for (int i = 0; i < kV; ++i) acc[r] += load<fv>(xr + kW * i) * w[i];
    }
  }
  for (int r = 0; r < MR; ++r) out[r] = hsum(acc[r]);
  if constexpr (!is_block_type(T)) {  // the float types' columns past the last whole group
    for (int64_t c = groups * 32; c < k; ++c) {
      float w;
      if constexpr (T == DType::F32) {
        w = load<float>(wrow + 4 * c);
      } else if constexpr (T == DType::F16) {
        w = half_at(wrow + 2 * c);
      } else {
        const uint32_t bits = static_cast<uint32_t>(load<uint16_t>(wrow + 2 * c)) << 16;
        std::memcpy(&w, &bits, 4);
      }
      for (int r = 0; r < MR; ++r) out[r] += x[r * k + c] * w;
    }
  }
}

// Rows of x per pass over a weight row: their accumulators and the decoded group stay in registers (32 zmm on
// AVX-512; 16 ymm / xmm otherwise).
constexpr int kRowsAtOnce = kW == 16 ? 8 : 4;

// dot_row for a run-time row count n <= kRowsAtOnce.
template <DType T, int N = kRowsAtOnce>
inline void dot_rows(int n, const float* x, int64_t k, const uint8_t* wrow, float* out) {
  if constexpr (N > 1) {
    if (n < N) return dot_rows<T, N - 1>(n, x, k, wrow, out);
  }
  dot_row<T, N>(x, k, wrow, out);
}

template <DType T>
void rows_t(const float* x, int64_t m, const Tensor& w, int64_t j0, int64_t j1, float* y, int64_t ldy) {
  const int64_t k = w.cols;
  constexpr int64_t kBlock = block_size(T), kBytes = block_bytes(T);
  const size_t row_bytes = static_cast<size_t>(w.stride / kBlock * kBytes);
  const auto* base = static_cast<const uint8_t*>(w.data);
  float out[kRowsAtOnce];
  for (int64_t j = j0; j < j1; ++j) {
    const uint8_t* wrow = base + static_cast<size_t>(j) * row_bytes;
    for (int64_t i = 0; i < m; i += kRowsAtOnce) {
      const float* xi = x + i * k;
      dot_rows<T>(m - i >= kRowsAtOnce ? kRowsAtOnce : static_cast<int>(m - i), xi, k, wrow, out);
      for (int64_t r = 0; r < kRowsAtOnce && i + r < m; ++r) y[(i + r) * ldy + j] = out[r];
    }
  }
}

template <DType T>
void dequantize_t(const Tensor& w, int64_t r0, int64_t r1, float* out) {
  const int64_t k = w.cols, groups = k / 32;
  constexpr int64_t kBlock = block_size(T), kBytes = block_bytes(T);
  const size_t row_bytes = static_cast<size_t>(w.stride / kBlock * kBytes);
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* wrow = base + static_cast<size_t>(r) * row_bytes;
    float* o = out + (r - r0) * k;
    for (int64_t g = 0; g < groups; ++g) {
      fv w[kV];
      decode<T>(wrow, g, w);
      std::memcpy(o + 32 * g, w, sizeof(w));
    }
    for (int64_t c = groups * 32; c < k; ++c) {  // float types only
      if constexpr (T == DType::F32) {
        o[c] = load<float>(wrow + 4 * c);
      } else if constexpr (T == DType::F16) {
        o[c] = half_at(wrow + 2 * c);
      } else if constexpr (T == DType::BF16) {
        const uint32_t bits = static_cast<uint32_t>(load<uint16_t>(wrow + 2 * c)) << 16;
        std::memcpy(o + c, &bits, 4);
      }
    }
  }
}

#define TESSERA_QUANT_DISPATCH(fn, type, ...) \
  switch (type) {                             \
    case DType::F32:                          \
      return fn<DType::F32>(__VA_ARGS__);     \
    case DType::F16:                          \
      return fn<DType::F16>(__VA_ARGS__);     \
    case DType::BF16:                         \
      return fn<DType::BF16>(__VA_ARGS__);    \
    case DType::Q8_0:                         \
      return fn<DType::Q8_0>(__VA_ARGS__);    \
    case DType::Q4_0:                         \
      return fn<DType::Q4_0>(__VA_ARGS__);    \
    case DType::Q4_1:                         \
      return fn<DType::Q4_1>(__VA_ARGS__);    \
    case DType::Q4_K:                         \
      return fn<DType::Q4_K>(__VA_ARGS__);    \
    case DType::Q6_K:                         \
      return fn<DType::Q6_K>(__VA_ARGS__);    \
  }

void rows_any(const float* x, int64_t m, const Tensor& w, int64_t j0, int64_t j1, float* y, int64_t ldy) {
  TESSERA_QUANT_DISPATCH(rows_t, w.dtype, x, m, w, j0, j1, y, ldy)
}
void dequantize_any(const Tensor& w, int64_t r0, int64_t r1, float* out) {
  TESSERA_QUANT_DISPATCH(dequantize_t, w.dtype, w, r0, r1, out)
}
#undef TESSERA_QUANT_DISPATCH

}  // namespace

}  // namespace tessera::ops
