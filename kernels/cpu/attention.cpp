// kernels/cpu/attention.cpp — causal prefill attention of a pre-padded group and per-sequence decode
// attention, both with an online softmax over blocks of keys: memory is O(block) per thread, never [L, L]; prefill
// runs tiles of queries against each key block.
//
// In:  queries and keys/values as strided rows (see ops.h).  Out: dense [rows, n_heads, head_dim].
// Guarantees: pad keys are never read; pad query rows are written as zeros; the result of a row does not
// depend on the other rows of the group or on its pad offset (same arithmetic order for the same keys).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/ops.h"

namespace tessera::ops {
namespace {

constexpr int64_t kKeyBlock = 64;
constexpr int64_t kQueryTile = 16;  // prefill: queries of one (row, head) that share each key block while it is hot

// One block of nb keys into one query's online softmax: running max m, running sum l, unnormalized out.
// The one body of both attentions, so that a prefill row and the decode of the same keys agree bit for bit.
inline void attend_block(const float* q, const float* keys, const float* values, int64_t stride, int64_t nb, float* out,
                         float& m, float& l, int64_t head_dim, float scale) {
  float scores[kKeyBlock];
  float block_max = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < nb; ++j) {
    const float* kr = keys + j * stride;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t d = 0; d < head_dim; ++d) dot += q[d] * kr[d];
    scores[j] = dot * scale;
    block_max = std::max(block_max, scores[j]);
  }
  const float m_new = std::max(m, block_max);
  const float correction = std::exp(m - m_new);  // exp(-inf) = 0 on the first block
  l *= correction;
#pragma omp simd
  for (int64_t d = 0; d < head_dim; ++d) out[d] *= correction;
  for (int64_t j = 0; j < nb; ++j) {
    const float p = std::exp(scores[j] - m_new);
    l += p;
    const float* vr = values + j * stride;
#pragma omp simd
    for (int64_t d = 0; d < head_dim; ++d) out[d] += p * vr[d];
  }
  m = m_new;
}

inline void normalize(float* out, float l, int64_t n, int64_t head_dim) {
  const float inv = n > 0 ? 1.0f / l : 0.0f;
#pragma omp simd
  for (int64_t d = 0; d < head_dim; ++d) out[d] *= inv;
}

// out[0:head_dim] = softmax(q · keys[0:n]ᵀ · scale) · values[0:n]; key j at keys + j * stride.
void attend(const float* q, const float* keys, const float* values, int64_t stride, int64_t n, float* out,
            int64_t head_dim, float scale) {
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t j0 = 0; j0 < n; j0 += kKeyBlock)
    attend_block(q, keys + j0 * stride, values + j0 * stride, stride, std::min(kKeyBlock, n - j0), out, m, l, head_dim,
                 scale);
  normalize(out, l, n, head_dim);
}

}  // namespace

// Tiled: a task is a tile of up to kQueryTile consecutive real queries of one (row, head); each key block is read
// once for the whole tile (from cache for all but the first query) instead of once per query, which is what made
// long prompts slow. Blocks start at the row's first real key for every query, and each query runs exactly
// attend()'s sequence of attend_block calls over its own keys, so a query's result depends neither on its tile
// nor on the row's pad offset, and equals the decode of the same keys.
void attention_prefill(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
                       const int32_t* pad, float* out, int64_t B, int64_t L, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, float scale) {
  const int64_t group = n_heads / n_kv_heads;
  const int64_t n_tiles = (L + kQueryTile - 1) / kQueryTile;  // per row, at most
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t bh = 0; bh < B * n_heads; ++bh) {
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int64_t b = bh / n_heads, h = bh % n_heads, kvh = h / group;
      const int64_t p = pad[b];
      if (t == 0) {  // this row's pad queries: zeros
        for (int64_t i = 0; i < p; ++i)
          std::memset(out + ((b * L + i) * n_heads + h) * head_dim, 0, sizeof(float) * head_dim);
      }
      const int64_t q0 = p + t * kQueryTile;  // the tile's first query column
      if (q0 >= L) continue;
      const int64_t nq = std::min(kQueryTile, L - q0);
      const float* keys = k + (b * L + p) * kv_stride + kvh * head_dim;  // the row's first real key
      const float* values = v + (b * L + p) * kv_stride + kvh * head_dim;
      float m[kQueryTile], l[kQueryTile];
      for (int64_t r = 0; r < nq; ++r) {
        m[r] = -std::numeric_limits<float>::infinity();
        l[r] = 0.0f;
        std::fill_n(out + ((b * L + q0 + r) * n_heads + h) * head_dim, head_dim, 0.0f);
      }
      const int64_t last_keys = q0 - p + nq;  // keys the tile's last query sees
      for (int64_t j0 = 0; j0 < last_keys; j0 += kKeyBlock) {
        for (int64_t r = 0; r < nq; ++r) {
          const int64_t n = q0 - p + r + 1;  // keys of this query
          if (j0 >= n) continue;
          attend_block(q + (b * L + q0 + r) * q_stride + h * head_dim, keys + j0 * kv_stride, values + j0 * kv_stride,
                       kv_stride, std::min(kKeyBlock, n - j0), out + ((b * L + q0 + r) * n_heads + h) * head_dim, m[r],
                       l[r], head_dim, scale);
        }
      }
      for (int64_t r = 0; r < nq; ++r)
        normalize(out + ((b * L + q0 + r) * n_heads + h) * head_dim, l[r], q0 - p + r + 1, head_dim);
    }
  }
}

void attention_decode(const float* q, int64_t q_stride, const float* cache_k, const float* cache_v,
                      const int32_t* slots, const int32_t* starts, const int32_t* lens, float* out, int64_t B,
                      int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale) {
  const int64_t group = n_heads / n_kv_heads;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bh = 0; bh < B * n_heads; ++bh) {
    const int64_t b = bh / n_heads, h = bh % n_heads, kvh = h / group;
    const int64_t base = ((static_cast<int64_t>(slots[b]) * n_kv_heads + kvh) * max_ctx + starts[b]) * head_dim;
    attend(q + b * q_stride + h * head_dim, cache_k + base, cache_v + base, head_dim, lens[b],
           out + (b * n_heads + h) * head_dim, head_dim, scale);
  }
}

}  // namespace tessera::ops
