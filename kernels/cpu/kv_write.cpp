// kernels/cpu/kv_write.cpp — scatter the step's K and V rows into their sequences' cache slots.
#include <cstring>

#include "kernels/ops.h"

namespace tessera::ops {
namespace {

uint16_t to_bf16(float f) {  // round to nearest even; NaN stays a (quiet) NaN
  uint32_t b;
  std::memcpy(&b, &f, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((b >> 16) | 0x40);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

uint16_t to_fp16(float f) {  // round to nearest even, with subnormals, overflow to inf, NaN kept
  uint32_t b;
  std::memcpy(&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000u, abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past the largest half: inf
  if (abs < 0x38800000u) {  // below the smallest normal half: a subnormal (or zero), m · 2^-24
    float a;
    std::memcpy(&a, &abs, 4);
    const float scaled = a * 16777216.0f;  // exact: a power-of-two scale
    const auto m = static_cast<uint32_t>(scaled);
    const float rest = scaled - static_cast<float>(m);
    const uint32_t r = rest > 0.5f || (rest == 0.5f && (m & 1u)) ? m + 1 : m;
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t e = (abs >> 23) - 112, man = abs & 0x7fffffu;
  uint32_t h = (e << 10) | (man >> 13);
  const uint32_t rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: still right
  return static_cast<uint16_t>(sign | h);
}

}  // namespace

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

namespace tessera::ops {

void kv_write(const float* k, const float* v, int64_t src_stride, const int32_t* slots, const int32_t* positions,
              int64_t n_tokens, void* cache_k, void* cache_v, DType cache_type, int64_t n_kv_heads, int64_t max_ctx,
              int64_t head_dim) {
  if (cache_type == DType::F32) {
    kv_write(k, v, src_stride, slots, positions, n_tokens, static_cast<float*>(cache_k), static_cast<float*>(cache_v),
             n_kv_heads, max_ctx, head_dim);
    return;
  }
  const bool bf16 = cache_type == DType::BF16;
  auto* ck = static_cast<uint16_t*>(cache_k);
  auto* cv = static_cast<uint16_t*>(cache_v);
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (slots[t] < 0) continue;  // a pad column
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const int64_t dst = ((static_cast<int64_t>(slots[t]) * n_kv_heads + h) * max_ctx + positions[t]) * head_dim;
      const float* ks = k + t * src_stride + h * head_dim;
      const float* vs = v + t * src_stride + h * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) {
        ck[dst + d] = bf16 ? to_bf16(ks[d]) : to_fp16(ks[d]);
        cv[dst + d] = bf16 ? to_bf16(vs[d]) : to_fp16(vs[d]);
      }
    }
  }
}

}  // namespace tessera::ops
