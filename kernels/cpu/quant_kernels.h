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

// Q6_K's group g (32 values of a 256-value super-block of 210 B: ql[128], qh[64], int8 scales[16], fp16 d): the 6-bit
// values of its halves (0…63, one int8 scale each: x = d·sc·(q − 32)).
struct Q6kGroup {
  const uint8_t *ql, *qh;
  const int8_t* sc;
  float d;
  int shift_l, shift_h;
  Q6kGroup(const uint8_t* row, int64_t g) {
    const uint8_t* b = row + 210 * (g / 8);
    const int sub = static_cast<int>(g % 8), n = sub / 4, qd = sub % 4;
    ql = b + 64 * n + 32 * (qd & 1);
    qh = b + 128 + 32 * n;
    sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * n + 2 * qd;
    d = half_at(b + 208);
    shift_l = qd >= 2 ? 4 : 0;
    shift_h = 2 * qd;
  }
  u8x16 values(int half) const {
    const u8x16 l = load<u8x16>(ql + 16 * half), h = load<u8x16>(qh + 16 * half);
    return ((l >> shift_l) & 15) | (((h >> shift_h) & 3) << 4);
  }
};

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
    const Q6kGroup q6(row, g);
    for (int half = 0; half < 2; ++half) {
      widen<false>(q6.values(half), w + kHalf * half);
      const float s = q6.d * static_cast<float>(q6.sc[half]);
      for (int i = 0; i < kHalf; ++i) w[kHalf * half + i] = (w[kHalf * half + i] - 32.0f) * s;
    }
  }
}

// The sum of a vector's lanes, through register casts (never its address: the accumulators stay in registers).
inline float hsum(fv v) {
#if defined(__AVX512F__)
  // Halves by a vector shuffle: GCC 12's _mm512_castps512_ps256 trips -Wuninitialized inside its own header.
  const __m256 h = (__m256)(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                            __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
#elif defined(__AVX2__)
  const __m256 h = (__m256)v;
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
#else
  __m128 s = (__m128)v;
#endif
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
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

// ---- int8 activations (quant.h's Activations::kInt8) ----
//
// The products of unsigned weight bytes and signed int8 activations are summed exactly in int32 lanes: one lane
// takes kLaneValues consecutive values, a vector of kW lanes covers kChunk values. With VNNI one vpdpbusd does a
// chunk; elsewhere both are widened to 16 bits and vpmaddwd sums pairs (no saturation: |u·q| ≤ 255·127).
#if defined(__AVX512VNNI__) || defined(__AVXVNNI__)
constexpr int kLaneValues = 4;
#else
constexpr int kLaneValues = 2;
#endif
constexpr int kChunk = kW * kLaneValues;
typedef int32_t iv __attribute__((vector_size(4 * kW)));

// A chunk of weight bytes as its dot product wants them: as loaded (VNNI) or widened to 16 bits.
#if defined(__AVX512VNNI__) || defined(__AVX512BW__)
typedef __m512i WBytes;
#elif defined(__AVX2__)
typedef __m256i WBytes;
#else
typedef __m128i WBytes;
#endif

inline WBytes load_wbytes(const uint8_t* u) {
#if defined(__AVX512VNNI__)
  return _mm512_loadu_si512(u);
#elif defined(__AVX512BW__)
  return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u)));
#elif defined(__AVXVNNI__)
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u));
#elif defined(__AVX2__)
  return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u)));
#else
  return _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(u)), _mm_setzero_si128());
#endif
}

// Lane l: Σ u·q over values [kLaneValues·l, kLaneValues·(l + 1)) of the chunk.
inline iv dot_chunk(WBytes w, const int8_t* q) {
#if defined(__AVX512VNNI__)
  const __m512i r = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(q));
#elif defined(__AVX512BW__)
  const __m512i r = _mm512_madd_epi16(w, _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q))));
#elif defined(__AVXVNNI__)
  const __m256i r =
      _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
#elif defined(__AVX2__)
  const __m256i r = _mm256_madd_epi16(w, _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
#else
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  const __m128i r = _mm_madd_epi16(w, _mm_srai_epi16(_mm_unpacklo_epi8(b, b), 8));
#endif
  return load<iv>(&r);
}

// Rows of x per pass over a decoded weight row (their accumulators stay in registers), and rows of x per block
// that one decode of a weight row serves (a block of x stays in L2 while a task's weight rows go by).
constexpr int kInt8RowsAtOnce = kW == 16 ? 16 : 8;
constexpr int64_t kInt8RowBlock = 64;

// The quantized rows are stored by tiles of kInt8RowsAtOnce rows (the last tile may have fewer, nt): a tile's
// chunk c of its row i is at q + r0·kpad + (c·nt + i)·kChunk, its lane scales at dlane + r0·lanes + (c·nt + i)·kW
// (r0 = the tile's first row). So the kernel reads one run of bytes per chunk for all the tile's rows.
inline int64_t tile_rows(const detail::Int8Rows& xq, int64_t r0) {
  return xq.m - r0 < kInt8RowsAtOnce ? xq.m - r0 : kInt8RowsAtOnce;
}

// Rows [r0, r1) of x quantized (isa.h's Int8Rows): one scale per detail::kInt8Group values, fp32 arithmetic, the
// same on every set.
void quantize_any(const float* x, int64_t r0, int64_t r1, const detail::Int8Rows& o) {
  constexpr int G = detail::kInt8Group;
  static_assert(G % kLaneValues == 0 && 16 % G == 0, "a scale covers whole lanes and no group spans two sums");
  const int64_t k = o.k, lanes = o.kpad / kLaneValues;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * k;
    const int64_t t0 = r / kInt8RowsAtOnce * kInt8RowsAtOnce, nt = tile_rows(o, t0), i = r - t0;
    int8_t* q = o.q + t0 * o.kpad;
    float* dl = o.dlane + t0 * lanes;
    float* sums = o.sums + r * o.halves;
    // Column c of the row goes to chunk c / kChunk of the tile; lane l to lane chunk l / kW.
    auto q_at = [&](int64_t c) -> int8_t& { return q[(c / kChunk * nt + i) * kChunk + c % kChunk]; };
    auto d_at = [&](int64_t l) -> float& { return dl[(l / kW * nt + i) * kW + l % kW]; };
    for (int64_t h = 0; h < k / 16; ++h) sums[h] = 0.0f;
    for (int64_t g = 0; g < k / G; ++g) {
      const float* v = xr + G * g;
      float amax = 0.0f;
      for (int e = 0; e < G; ++e) amax = amax > __builtin_fabsf(v[e]) ? amax : __builtin_fabsf(v[e]);
      const float d = amax / 127.0f, inv = d != 0.0f ? 1.0f / d : 0.0f;
      int32_t s = 0;
      for (int e = 0; e < G; ++e) {
        const int32_t qi = static_cast<int32_t>(__builtin_nearbyintf(v[e] * inv));
        q_at(G * g + e) = static_cast<int8_t>(qi);
        s += qi;
      }
      sums[G * g / 16] += d * static_cast<float>(s);
      for (int l = 0; l < G / kLaneValues; ++l) d_at(G / kLaneValues * g + l) = d;
    }
    for (int64_t h = k / 16; h < o.halves; ++h) sums[h] = 0.0f;
    for (int64_t c = k; c < o.kpad; ++c) q_at(c) = 0;
    for (int64_t l = k / kLaneValues; l < lanes; ++l) d_at(l) = 0.0f;
  }
}

// Group g of a weight row as 32 unsigned bytes u (in value order) with a scale a[h] and offset b[h] per 16 values:
// value = a·u + b (quant.h).
template <DType T>
inline void decode_bytes(const uint8_t* row, int64_t g, uint8_t* u, float* a, float* b) {
  if constexpr (T == DType::Q8_0) {
    const uint8_t* blk = row + 34 * g;
    const float d = half_at(blk);
    const u8x16 flip = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80};
    const u8x16 q0 = load<u8x16>(blk + 2) ^ flip, q1 = load<u8x16>(blk + 18) ^ flip;
    std::memcpy(u, &q0, 16);
    std::memcpy(u + 16, &q1, 16);
    a[0] = a[1] = d;
    b[0] = b[1] = -128.0f * d;
  } else if constexpr (T == DType::Q4_0 || T == DType::Q4_1) {
    const uint8_t* blk = row + (T == DType::Q4_0 ? 18 : 20) * g;
    const float d = half_at(blk), off = T == DType::Q4_0 ? -8.0f * d : half_at(blk + 2);
    const u8x16 q = load<u8x16>(blk + (T == DType::Q4_0 ? 2 : 4)), lo = q & 15, hi = q >> 4;
    std::memcpy(u, &lo, 16);
    std::memcpy(u + 16, &hi, 16);
    a[0] = a[1] = d;
    b[0] = b[1] = off;
  } else if constexpr (T == DType::Q4_K) {
    const uint8_t* blk = row + 144 * (g / 8);
    const int j = static_cast<int>(g % 8);
    float sc, mn;
    q4k_scale_min(blk + 4, j, &sc, &mn);
    const uint8_t* qs = blk + 16 + 32 * (j / 2);
    const u8x16 q0 = load<u8x16>(qs), q1 = load<u8x16>(qs + 16);
    const u8x16 v0 = (j & 1) ? q0 >> 4 : q0 & 15, v1 = (j & 1) ? q1 >> 4 : q1 & 15;
    std::memcpy(u, &v0, 16);
    std::memcpy(u + 16, &v1, 16);
    a[0] = a[1] = half_at(blk) * sc;
    b[0] = b[1] = -half_at(blk + 2) * mn;
  } else {  // Q6_K
    static_assert(T == DType::Q6_K);
    const Q6kGroup q6(row, g);
    for (int half = 0; half < 2; ++half) {
      const u8x16 v = q6.values(half);
      std::memcpy(u + 16 * half, &v, 16);
      a[half] = q6.d * static_cast<float>(q6.sc[half]);
      b[half] = -32.0f * a[half];
    }
  }
}

// A weight row as the int8 kernel reads it: bytes u [kpad] (zeros past k), each lane's scale [kpad / kLaneValues]
// (zeros past k) and the offsets [halves] (zeros past k / 16).
template <DType T>
inline void decode_row_bytes(const uint8_t* wrow, int64_t k, int64_t kpad, int64_t halves, uint8_t* u, float* alane,
                             float* b) {
  constexpr int kLanesPerHalf = 16 / kLaneValues;
  for (int64_t g = 0; g < k / 32; ++g) {
    float a2[2];
    decode_bytes<T>(wrow, g, u + 32 * g, a2, b + 2 * g);
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < kLanesPerHalf; ++l) alane[(2 * g + h) * kLanesPerHalf + l] = a2[h];
  }
  for (int64_t c = k; c < kpad; ++c) u[c] = 0;
  for (int64_t h = k / 16; h < halves; ++h) b[h] = 0.0f;
  for (int64_t l = k / kLaneValues; l < kpad / kLaneValues; ++l) alane[l] = 0.0f;
}

// The tile of rows [r0, r0 + MR) of xq (MR = its row count) against one decoded weight row: each chunk of weight
// bytes loaded once for all MR rows, whose bytes and scales follow one another (tile order, above).
template <int MR>
inline void int8_rows(const detail::Int8Rows& xq, int64_t r0, const uint8_t* u, const float* alane, const float* b,
                      float* out) {
  const int64_t chunks = xq.kpad / kChunk;
  const int8_t* q = xq.q + r0 * xq.kpad;
  const float* dl = xq.dlane + r0 * (xq.kpad / kLaneValues);
  fv acc[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r] = fv{};
  for (int64_t c = 0; c < chunks; ++c, q += MR * kChunk, dl += MR * kW) {
    const WBytes w = load_wbytes(u + kChunk * c);
    const fv a = load<fv>(alane + kW * c);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
      acc[r] += __builtin_convertvector(dot_chunk(w, q + r * kChunk), fv) * (a * load<fv>(dl + r * kW));
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {  // + Σ b · d·Σq: the offsets against each 16 values' sum
    const float* s = xq.sums + (r0 + r) * xq.halves;
    for (int64_t h = 0; h < xq.halves; h += kW) acc[r] += load<fv>(b + h) * load<fv>(s + h);
    out[r] = hsum(acc[r]);
  }
}

template <int N = kInt8RowsAtOnce>
inline void int8_rows_n(int n, const detail::Int8Rows& xq, int64_t r0, const uint8_t* u, const float* alane,
                        const float* b, float* out) {
  if constexpr (N > 1) {
    if (n < N) return int8_rows_n<N - 1>(n, xq, r0, u, alane, b, out);
  }
  int8_rows<N>(xq, r0, u, alane, b, out);
}

template <DType T>
void rows_int8_t(const detail::Int8Rows& xq, const Tensor& w, int64_t j0, int64_t j1, float* y, int64_t ldy,
                 void* scratch) {
  const int64_t k = xq.k, kpad = xq.kpad;
  const size_t row_bytes = static_cast<size_t>(w.stride / block_size(T) * block_bytes(T));
  const auto* base = static_cast<const uint8_t*>(w.data);
  auto* u = static_cast<uint8_t*>(scratch);
  auto* alane = reinterpret_cast<float*>(u + (kpad + 63) / 64 * 64);
  float* b = alane + (kpad / kLaneValues + 15) / 16 * 16;
  float out[kInt8RowsAtOnce];
  for (int64_t rb = 0; rb < xq.m; rb += kInt8RowBlock) {
    const int64_t re = xq.m - rb < kInt8RowBlock ? xq.m : rb + kInt8RowBlock;
    for (int64_t j = j0; j < j1; ++j) {
      decode_row_bytes<T>(base + static_cast<size_t>(j) * row_bytes, k, kpad, xq.halves, u, alane, b);
      for (int64_t r = rb; r < re; r += kInt8RowsAtOnce) {
        const int n = static_cast<int>(tile_rows(xq, r));
        int8_rows_n(n, xq, r, u, alane, b, out);
        for (int i = 0; i < n; ++i) y[(r + i) * ldy + j] = out[i];
      }
    }
  }
}

void rows_int8_any(const detail::Int8Rows& xq, const Tensor& w, int64_t j0, int64_t j1, float* y, int64_t ldy,
                   void* scratch) {
  switch (w.dtype) {
    case DType::Q8_0:
      return rows_int8_t<DType::Q8_0>(xq, w, j0, j1, y, ldy, scratch);
    case DType::Q4_0:
      return rows_int8_t<DType::Q4_0>(xq, w, j0, j1, y, ldy, scratch);
    case DType::Q4_1:
      return rows_int8_t<DType::Q4_1>(xq, w, j0, j1, y, ldy, scratch);
    case DType::Q4_K:
      return rows_int8_t<DType::Q4_K>(xq, w, j0, j1, y, ldy, scratch);
    case DType::Q6_K:
      return rows_int8_t<DType::Q6_K>(xq, w, j0, j1, y, ldy, scratch);
    default:
      break;  // float types never come here (quant.cpp keeps them on the fp32 path)
  }
}

// The table entry for this file's instruction set.
#define TESSERA_CPU_KERNELS \
  { rows_any, dequantize_any, attend_tile, kChunk, kLaneValues, quantize_any, rows_int8_any }

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
