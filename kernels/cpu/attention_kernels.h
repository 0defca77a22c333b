// kernels/cpu/attention_kernels.h — the attention tile of kernels/cpu/attention.cpp, GEMM-shaped, in the native
// vectors of quant_kernels.h (compiled once per instruction set by isa_<set>.cpp; see isa.h).
//
// attend_tile(): nq query positions × `heads` query heads (the heads that share one KV head under GQA) against one
// sequence's keys (rows of k / v, or of a paged cache's blocks: isa.h's KvPages), position r seeing keys
// [0, n_first + r · step): causal
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

// Queries per register block of the scores (their accumulators and a row of the transposed keys stay in
// registers): 4 with 16-float vectors (16 + 4 of the 32 registers), 1 with narrower ones (16 registers).
constexpr int kQueryBlock = kW == 16 ? 4 : 1;

// The tile, with ND = head_dim / kW vectors per output row when that is a compile-time size (P·V then accumulates
// a query's output in registers across the block's keys), or ND = 0 for any head_dim (through memory). Both run the
// same operations in the same order for each query, so they give the same bits.
template <DType KT, int ND>
void attend_tile_t(const float* q, int64_t q_stride, const void* k_base, const void* v_base, int64_t kv_stride,
                   const KvPages& pages, int64_t nq, int64_t n_first, int64_t step, int64_t heads, int64_t head_stride,
                   float* out, int64_t out_stride, int64_t head_dim, float scale) {
  constexpr int64_t kElem = KT == DType::F32 ? 4 : 2;
  const auto* k = static_cast<const uint8_t*>(k_base);
  const auto* v = static_cast<const uint8_t*>(v_base);
  constexpr int64_t kMaxRows = 512;  // query rows (positions × heads) per pass over the keys
  float m[kMaxRows], l[kMaxRows];
  alignas(64) float kt[256 * kKeyBlock];  // the block's keys transposed: [head_dim][kKeyBlock]
  alignas(64) float p[kKeyBlock];
  const uint8_t *krow[kKeyBlock], *vrow[kKeyBlock];  // the block's key and value rows (a paged cache scatters them)
  const float neg_inf = -__builtin_inff();
  // Row r of a pass: position r / heads of the pass, head r % heads.
  const int64_t per_pass = heads <= kMaxRows ? kMaxRows / heads : 1;
  for (int64_t r0 = 0; r0 < nq; r0 += per_pass) {  // callers pass tiles within kMaxRows; longer runs loop
    const int64_t nt = min64(per_pass, nq - r0), rows = nt * heads, first = n_first + r0 * step;
    auto q_row = [&](int64_t r) { return q + (r0 + r / heads) * q_stride + r % heads * head_stride; };
    auto out_row = [&](int64_t r) { return out + (r0 + r / heads) * out_stride + r % heads * head_stride; };
    for (int64_t r = 0; r < rows; ++r) {
      m[r] = neg_inf;
      l[r] = 0.0f;
      float* o = out_row(r);
      for (int64_t d = 0; d < head_dim; ++d) o[d] = 0.0f;
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
      const int nvb = static_cast<int>((nb + kW - 1) / kW);  // key vectors holding the block's keys
      for (int64_t rb = 0; rb < rows; rb += kQueryBlock) {
        // The scores of up to kQueryBlock queries: each row of kt loaded once for all of them.
        const int qb = static_cast<int>(min64(kQueryBlock, rows - rb));
        fv s[kQueryBlock][kKeyVectors];
        for (int u = 0; u < kQueryBlock; ++u)
          for (int i = 0; i < kKeyVectors; ++i) s[u][i] = fv{};
        const float* qr[kQueryBlock];
        for (int u = 0; u < kQueryBlock; ++u) qr[u] = q_row(rb + (u < qb ? u : 0));
        for (int64_t d = 0; d < head_dim; ++d) {
          const float* row = kt + d * kKeyBlock;
          fv kv[kKeyVectors];
          for (int i = 0; i < nvb; ++i) kv[i] = load<fv>(row + kW * i);
#pragma GCC unroll 4
          for (int u = 0; u < kQueryBlock; ++u) {
            const float qd = qr[u][d];
            for (int i = 0; i < nvb; ++i) s[u][i] += kv[i] * qd;
          }
        }
        for (int u = 0; u < qb; ++u) {
          const int64_t r = rb + u, n = first + r / heads * step;  // keys this query sees
          if (j0 >= n) continue;
          const int64_t nbr = min64(kKeyBlock, n - j0);
          const int nv = static_cast<int>((nbr + kW - 1) / kW);
          fv* sr = s[u];
          float block_max = neg_inf;
          for (int i = 0; i < nv; ++i) sr[i] *= scale;
          for (int e = static_cast<int>(nbr - kW * (nv - 1)); e < kW; ++e) sr[nv - 1][e] = neg_inf;  // past the keys
          {  // max is exact: one horizontal max of the lane-wise max
            fv mx = sr[0];
            for (int i = 1; i < nv; ++i) mx = mx > sr[i] ? mx : sr[i];
            block_max = hmax(mx);
          }
          const float m_new = maxf(m[r], block_max);
          const float correction = __builtin_expf(m[r] - m_new);  // exp(−inf) = 0 on the first block
          fv sum = fv{};
          for (int i = 0; i < nv; ++i) {
            const fv e = exp_nonpositive(sr[i] - m_new);
            sum += e;
            std::memcpy(p + kW * i, &e, sizeof(e));
          }
          l[r] = l[r] * correction + hsum(sum);
          m[r] = m_new;
          float* o = out_row(r);
          if constexpr (ND > 0) {
            // Two accumulators per vector (even and odd keys), so that ND < 8 still keeps both FMA pipes busy;
            // added at the block's end (the same order for every query, in prefill and in decode).
            fv acc[ND], odd[ND];
            for (int i = 0; i < ND; ++i) {
              acc[i] = load<fv>(o + kW * i) * correction;
              odd[i] = fv{};
            }
            int64_t j = 0;
            for (; j + 1 < nbr; j += 2) {
              const float p0 = p[j], p1 = p[j + 1];
              const uint8_t *v0 = vrow[j], *v1 = vrow[j + 1];
#pragma GCC unroll 16
              for (int i = 0; i < ND; ++i) {
                acc[i] += kv_vec<KT>(v0, kW * i) * p0;
                odd[i] += kv_vec<KT>(v1, kW * i) * p1;
              }
            }
            if (j < nbr) {
              const float pj = p[j];
              const uint8_t* vr = vrow[j];
#pragma GCC unroll 16
              for (int i = 0; i < ND; ++i) acc[i] += kv_vec<KT>(vr, kW * i) * pj;
            }
            for (int i = 0; i < ND; ++i) {
              const fv sum_i = acc[i] + odd[i];
              std::memcpy(o + kW * i, &sum_i, sizeof(fv));
            }
          } else {
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
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = first + r / heads * step;
      const float inv = n > 0 ? 1.0f / l[r] : 0.0f;
      float* o = out_row(r);
      for (int64_t d = 0; d < head_dim; ++d) o[d] *= inv;
    }
  }
}

template <DType KT>
void attend_tile_kt(const float* q, int64_t q_stride, const void* k, const void* v, int64_t kv_stride,
                    const KvPages& pages, int64_t nq, int64_t n_first, int64_t step, int64_t heads, int64_t head_stride,
                    float* out, int64_t out_stride, int64_t head_dim, float scale) {
  const int64_t nd = head_dim % kW == 0 ? head_dim / kW : 0;
#define TESSERA_ATTEND_ND(N)                                                                                        \
  attend_tile_t<KT, N>(q, q_stride, k, v, kv_stride, pages, nq, n_first, step, heads, head_stride, out, out_stride, \
                       head_dim, scale)
  switch (nd) {  // the usual head sizes (32 … 256) with their output rows in registers
    case 2:
      return TESSERA_ATTEND_ND(2);
    case 4:
      return TESSERA_ATTEND_ND(4);
    case 8:
      return TESSERA_ATTEND_ND(8);
    case 16:
      return TESSERA_ATTEND_ND(16);
    default:
      return TESSERA_ATTEND_ND(0);
  }
#undef TESSERA_ATTEND_ND
}

void attend_tile(const float* q, int64_t q_stride, const void* k, const void* v, DType kv_type, int64_t kv_stride,
                 const KvPages& pages, int64_t nq, int64_t n_first, int64_t step, int64_t heads, int64_t head_stride,
                 float* out, int64_t out_stride, int64_t head_dim, float scale) {
  if (kv_type == DType::F16)
    return attend_tile_kt<DType::F16>(q, q_stride, k, v, kv_stride, pages, nq, n_first, step, heads, head_stride, out,
                                      out_stride, head_dim, scale);
  if (kv_type == DType::BF16)
    return attend_tile_kt<DType::BF16>(q, q_stride, k, v, kv_stride, pages, nq, n_first, step, heads, head_stride, out,
                                       out_stride, head_dim, scale);
  attend_tile_kt<DType::F32>(q, q_stride, k, v, kv_stride, pages, nq, n_first, step, heads, head_stride, out,
                             out_stride, head_dim, scale);
}

}  // namespace
}  // namespace tessera::ops
