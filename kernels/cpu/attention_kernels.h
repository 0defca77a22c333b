// kernels/cpu/attention_kernels.h — the attention tile of kernels/cpu/attention.cpp, GEMM-shaped, in the native
// vectors of quant_kernels.h (compiled once per instruction set by isa_<set>.cpp; see isa.h).
//
// attend_tile(): nq queries against one sequence's keys (rows of k / v, or of a paged cache's blocks: isa.h's
// KvPages), query r seeing keys [0, n_first + r · step): causal
// prefill's tile of query columns of one head (step 1), or decode's query heads that share one KV head (step 0). Keys
// go in blocks of kKeyBlock: each block is transposed once for the whole tile (head_dim × kKeyBlock), so that a query's
// scores are head_dim vector FMAs across keys (q[d] broadcast), the softmax is an online one over blocks with a
// vectorized exp, and P·V is kKeyBlock FMAs across head_dim. A query's arithmetic is the same sequence whatever the
// tile (its scores lane by lane, its blocks from key 0): a prefill query and the decode of the same keys agree bit for
// bit, and a row's result depends neither on its tile nor on its pad offset.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/cpu/quant_kernels.h"

namespace tessera::ops {
namespace {

constexpr int64_t kKeyBlock = 64;
constexpr int kKeyVectors = kKeyBlock / kW;

typedef int32_t iv __attribute__((vector_size(4 * kW)));

// e^x for x <= 0 (scores minus their running max; −inf gives 0): 2^n · p(r) with x = n·ln2 + r, |r| <= ln2 / 2,
// p a degree-6 polynomial (relative error < 2e-7 on the range). Lanes below −87.3 are flushed to 0.
inline fv exp_nonpositive(fv x) {
  const fv lo = fv{} - 87.3f;
  const iv under = x < lo;
  x = x < lo ? lo : x;
  // n = floor(x·log2e + 1/2): truncation (the conversion) rounds a negative number up, so step down where it did
  const fv y = x * 1.44269504088896341f + 0.5f;
  const fv t = __builtin_convertvector(__builtin_convertvector(y, iv), fv);
  const fv n = t > y ? t - 1.0f : t;
  const fv r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;  // ln2 in two parts
  fv p = fv{} + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const iv bits = (__builtin_convertvector(n, iv) + 127) << 23;
  fv scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const fv e = p * scale;
  return under ? fv{} : e;
}

// Scalar helpers of this file's own (no std:: templates: see the one-definition note in quant_kernels.h).
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline float maxf(float a, float b) { return a > b ? a : b; }

inline float hmax(fv v) {
  float m = v[0];
  for (int i = 1; i < kW; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

// Element i of a K or V row stored in KT (fp32, or a 16-bit cache), and kW of them from element i.
template <DType KT>
inline float kv_at(const void* row, int64_t i) {
  const auto* b = static_cast<const uint8_t*>(row);
  if constexpr (KT == DType::F32) {
    return load<float>(b + 4 * i);
  } else if constexpr (KT == DType::F16) {
    return half_at(b + 2 * i);
  } else {
    const uint32_t bits = static_cast<uint32_t>(load<uint16_t>(b + 2 * i)) << 16;
    return load<float>(&bits);
  }
}
template <DType KT>
inline fv kv_vec(const void* row, int64_t i) {
  const auto* b = static_cast<const uint8_t*>(row);
  if constexpr (KT == DType::F32) {
    return load<fv>(b + 4 * i);
  } else if constexpr (KT == DType::F16) {
    return halves(b + 2 * i);
  } else {
    return bf16s(b + 2 * i);
  }
}

template <DType KT>
void attend_tile_t(const float* q, int64_t q_stride, const void* k_base, const void* v_base, int64_t kv_stride,
                   const KvPages& pages, int64_t nq, int64_t n_first, int64_t step, float* out, int64_t out_stride,
                   int64_t head_dim, float scale) {
  constexpr int64_t kElem = KT == DType::F32 ? 4 : 2;
  const auto* k = static_cast<const uint8_t*>(k_base);
  const auto* v = static_cast<const uint8_t*>(v_base);
  constexpr int64_t kMaxTile = 64;
  float m[kMaxTile], l[kMaxTile];
  alignas(64) float kt[256 * kKeyBlock];  // the block's keys transposed: [head_dim][kKeyBlock]
  alignas(64) float p[kKeyBlock];
  const uint8_t *krow[kKeyBlock], *vrow[kKeyBlock];  // the block's key and value rows (a paged cache scatters them)
  const float neg_inf = -__builtin_inff();
  for (int64_t r0 = 0; r0 < nq; r0 += kMaxTile) {  // callers pass tiles of at most kMaxTile; longer runs loop
    const int64_t nt = min64(kMaxTile, nq - r0), first = n_first + r0 * step;
    for (int64_t r = 0; r < nt; ++r) {
      m[r] = neg_inf;
      l[r] = 0.0f;
      for (int64_t d = 0; d < head_dim; ++d) out[(r0 + r) * out_stride + d] = 0.0f;
    }
    const int64_t last = first + (nt - 1) * step;  // keys of the tile's last query
    for (int64_t j0 = 0; j0 < last; j0 += kKeyBlock) {
      const int64_t nb = min64(kKeyBlock, last - j0);
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t key = j0 + j, pk = pages.first + key;  // → its element offset in k / v
        const int64_t at = pages.blocks == nullptr ? key * kv_stride
                                                   : pages.blocks[pk / pages.block_size] * pages.block_stride +
                                                         pk % pages.block_size * kv_stride;
        krow[j] = k + at * kElem;
        vrow[j] = v + at * kElem;
        for (int64_t d = 0; d < head_dim; ++d) kt[d * kKeyBlock + j] = kv_at<KT>(krow[j], d);
      }
      for (int64_t j = nb; j < kKeyBlock; ++j)
        for (int64_t d = 0; d < head_dim; ++d) kt[d * kKeyBlock + j] = 0.0f;
      for (int64_t r = 0; r < nt; ++r) {
        const int64_t n = first + r * step;  // keys this query sees
        if (j0 >= n) continue;
        const int64_t nbr = min64(kKeyBlock, n - j0);
        const int nv = static_cast<int>((nbr + kW - 1) / kW);
        const float* qr = q + (r0 + r) * q_stride;
        fv s[kKeyVectors];
        for (int i = 0; i < kKeyVectors; ++i) s[i] = fv{};
        for (int64_t d = 0; d < head_dim; ++d) {
          const float qd = qr[d];
          const float* row = kt + d * kKeyBlock;
          for (int i = 0; i < nv; ++i) s[i] += load<fv>(row + kW * i) * qd;
        }
        float block_max = neg_inf;
        for (int i = 0; i < nv; ++i) s[i] *= scale;
        for (int e = static_cast<int>(nbr - kW * (nv - 1)); e < kW; ++e) s[nv - 1][e] = neg_inf;  // past the keys
        for (int i = 0; i < nv; ++i) block_max = maxf(block_max, hmax(s[i]));
        const float m_new = maxf(m[r], block_max);
        const float correction = __builtin_expf(m[r] - m_new);  // exp(−inf) = 0 on the first block
        fv sum = fv{};
        for (int i = 0; i < nv; ++i) {
          const fv e = exp_nonpositive(s[i] - m_new);
          sum += e;
          std::memcpy(p + kW * i, &e, sizeof(e));
        }
        l[r] = l[r] * correction + hsum(sum);
        m[r] = m_new;
        float* o = out + (r0 + r) * out_stride;
        for (int64_t d = 0; d < head_dim; ++d) o[d] *= correction;
        for (int64_t j = 0; j < nbr; ++j) {
          const float pj = p[j];
          const uint8_t* vr = vrow[j];
          int64_t d = 0;
          for (; d + kW <= head_dim; d += kW) {
            const fv acc = load<fv>(o + d) + kv_vec<KT>(vr, d) * pj;
            std::memcpy(o + d, &acc, sizeof(acc));
          }
          for (; d < head_dim; ++d) o[d] += pj * kv_at<KT>(vr, d);
        }
      }
    }
    for (int64_t r = 0; r < nt; ++r) {
      const int64_t n = first + r * step;
      const float inv = n > 0 ? 1.0f / l[r] : 0.0f;
      float* o = out + (r0 + r) * out_stride;
      for (int64_t d = 0; d < head_dim; ++d) o[d] *= inv;
    }
  }
}

void attend_tile(const float* q, int64_t q_stride, const void* k, const void* v, DType kv_type, int64_t kv_stride,
                 const KvPages& pages, int64_t nq, int64_t n_first, int64_t step, float* out, int64_t out_stride,
                 int64_t head_dim, float scale) {
  if (kv_type == DType::F16)
    return attend_tile_t<DType::F16>(q, q_stride, k, v, kv_stride, pages, nq, n_first, step, out, out_stride, head_dim,
                                     scale);
  if (kv_type == DType::BF16)
    return attend_tile_t<DType::BF16>(q, q_stride, k, v, kv_stride, pages, nq, n_first, step, out, out_stride, head_dim,
                                      scale);
  attend_tile_t<DType::F32>(q, q_stride, k, v, kv_stride, pages, nq, n_first, step, out, out_stride, head_dim, scale);
}

}  // namespace
}  // namespace tessera::ops
