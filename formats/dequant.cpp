// formats/dequant.cpp — reference dequantizers; see dequant.h for the block layouts.
#include "formats/dequant.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "common/check.h"

namespace tessera::formats {

namespace {

constexpr int kQK = 32;           // values per GGML block
constexpr int kQK_K = 256;        // values per GGML K-quant super-block
constexpr int kMaxBlock = kQK_K;  // the largest dtype_block_size()

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

void dequantize_q8_0(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, dst += kQK) {
    const float d = fp16_to_fp32(load_u16(src));
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(static_cast<int8_t>(src[2 + j])) * d;
  }
}

void dequantize_q4_0(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 18, dst += kQK) {
    const float d = fp16_to_fp32(load_u16(src));
    const uint8_t* qs = src + 2;
    for (int j = 0; j < kQK / 2; ++j) {
      dst[j] = d * static_cast<float>((qs[j] & 0xF) - 8);
      dst[j + kQK / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

void dequantize_q4_1(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 20, dst += kQK) {
    const float d = fp16_to_fp32(load_u16(src));
    const float m = fp16_to_fp32(load_u16(src + 2));
    const uint8_t* qs = src + 4;
    for (int j = 0; j < kQK / 2; ++j) {
      // Product rounded before the add, as the reference does (no FMA contraction under -std=c++20).
      const float lo = d * static_cast<float>(qs[j] & 0xF);
      const float hi = d * static_cast<float>(qs[j] >> 4);
      dst[j] = lo + m;
      dst[j + kQK / 2] = hi + m;
    }
  }
}

void dequantize_q4_k(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 144, dst += kQK_K) {
    const float d = fp16_to_fp32(load_u16(src));
    const float dmin = fp16_to_fp32(load_u16(src + 2));
    const uint8_t* scales = src + 4;
    const uint8_t* qs = src + 16;
    for (int j = 0; j < kQK_K / kQK; ++j) {
      uint8_t sc, m;
      q4k_scale_min(scales, j, &sc, &m);
      const float dj = d * static_cast<float>(sc);
      const float mj = dmin * static_cast<float>(m);
      const uint8_t* q = qs + kQK * (j / 2);
      const int shift = (j % 2) * 4;
      float* y = dst + kQK * j;
      for (int l = 0; l < kQK; ++l) {
        // Product rounded before the subtraction, as the reference does.
        const float p = dj * static_cast<float>((q[l] >> shift) & 0xF);
        y[l] = p - mj;
      }
    }
  }
}

void dequantize_q6_k(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 210, dst += kQK_K) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const uint8_t* scales = src + 192;
    const float d = fp16_to_fp32(load_u16(src + 208));
    for (int h = 0; h < 2; ++h) {
      for (int k = 0; k < 4; ++k) {
        const uint8_t* lo = ql + 64 * h + 32 * (k & 1);
        const int lo_shift = 4 * (k >> 1);
        const uint8_t* hi = qh + 32 * h;
        const int hi_shift = 2 * k;
        const int v0 = 128 * h + 32 * k;
        for (int l = 0; l < kQK; ++l) {
          const int v = v0 + l;
          const float ds = d * static_cast<float>(static_cast<int8_t>(scales[v / 16]));
          const int q = (((lo[l] >> lo_shift) & 0xF) | (((hi[l] >> hi_shift) & 3) << 4)) - 32;
          dst[v] = ds * static_cast<float>(q);
        }
      }
    }
  }
}

}  // namespace

void q4k_scale_min(const uint8_t* scales12, int j, uint8_t* sc, uint8_t* m) {
  TESSERA_CHECK(0 <= j && j < 8);
  if (j < 4) {
    *sc = static_cast<uint8_t>(scales12[j] & 63);
    *m = static_cast<uint8_t>(scales12[j + 4] & 63);
  } else {
    *sc = static_cast<uint8_t>((scales12[j + 4] & 0xF) | ((scales12[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((scales12[j + 4] >> 4) | ((scales12[j] >> 6) << 4));
  }
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return sign ? -v : v;
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_fp32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

void dequantize_row(DType type, const void* src_void, float* dst, int64_t n) {
  TESSERA_CHECK(n >= 0);
  TESSERA_CHECK(n % dtype_block_size(type) == 0);
  if (n == 0) return;
  TESSERA_CHECK(src_void != nullptr && dst != nullptr);
  const auto* src = static_cast<const uint8_t*>(src_void);
  switch (type) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(load_u16(src + 2 * i));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(load_u16(src + 2 * i));
      return;
    case DType::Q8_0:
      dequantize_q8_0(src, dst, n / kQK);
      return;
    case DType::Q4_0:
      dequantize_q4_0(src, dst, n / kQK);
      return;
    case DType::Q4_1:
      dequantize_q4_1(src, dst, n / kQK);
      return;
    case DType::Q4_K:
      dequantize_q4_k(src, dst, n / kQK_K);
      return;
    case DType::Q6_K:
      dequantize_q6_k(src, dst, n / kQK_K);
      return;
  }
  TESSERA_CHECK_MSG(false, "unknown DType");
}

void dequantize_range(DType type, const void* tensor_data, int64_t begin, int64_t end, float* dst) {
  TESSERA_CHECK(0 <= begin && begin <= end);
  if (begin == end) return;
  const auto* base = static_cast<const uint8_t*>(tensor_data);
  const int64_t bs = dtype_block_size(type);
  const int64_t bb = dtype_block_bytes(type);
  TESSERA_CHECK(bs <= kMaxBlock);
  int64_t pos = begin;
  // Leading partial block.
  if (pos % bs != 0) {
    float tmp[kMaxBlock];
    const int64_t blk = pos / bs;
    dequantize_row(type, base + blk * bb, tmp, bs);
    const int64_t take = std::min(end, (blk + 1) * bs) - pos;
    std::memcpy(dst, tmp + (pos - blk * bs), static_cast<size_t>(take) * sizeof(float));
    dst += take;
    pos += take;
  }
  // Whole blocks.
  const int64_t n_full = (end - pos) / bs * bs;
  if (n_full > 0) {
    dequantize_row(type, base + pos / bs * bb, dst, n_full);
    dst += n_full;
    pos += n_full;
  }
  // Trailing partial block.
  if (pos < end) {
    float tmp[kMaxBlock];
    dequantize_row(type, base + pos / bs * bb, tmp, bs);
    std::memcpy(dst, tmp, static_cast<size_t>(end - pos) * sizeof(float));
  }
}

}  // namespace tessera::formats
