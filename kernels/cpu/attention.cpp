// kernels/cpu/attention.cpp — causal prefill attention of a pre-padded group and per-sequence decode
// attention, both with an online softmax over blocks of keys: memory is O(block) per thread, never [L, L].
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

// out[0:head_dim] = softmax(q · keys[0:n]ᵀ · scale) · values[0:n]; key j at keys + j * stride.
void attend(const float* q, const float* keys, const float* values, int64_t stride, int64_t n, float* out,
            int64_t head_dim, float scale) {
  float scores[kKeyBlock];
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t j0 = 0; j0 < n; j0 += kKeyBlock) {
    const int64_t nb = std::min(kKeyBlock, n - j0);
    float block_max = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < nb; ++j) {
      const float* kr = keys + (j0 + j) * stride;
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
      const float* vr = values + (j0 + j) * stride;
#pragma omp simd
      for (int64_t d = 0; d < head_dim; ++d) out[d] += p * vr[d];
    }
    m = m_new;
  }
  const float inv = n > 0 ? 1.0f / l : 0.0f;
#pragma omp simd
  for (int64_t d = 0; d < head_dim; ++d) out[d] *= inv;
}

}  // namespace

void attention_prefill(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
                       const int32_t* pad, float* out, int64_t B, int64_t L, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, float scale) {
  const int64_t group = n_heads / n_kv_heads;
  // One task per (row, head, query column): the triangle's uneven work is balanced by dynamic scheduling.
#pragma omp parallel for collapse(2) schedule(dynamic, 8)
  for (int64_t bh = 0; bh < B * n_heads; ++bh) {
    for (int64_t i = 0; i < L; ++i) {
      const int64_t b = bh / n_heads, h = bh % n_heads, kvh = h / group;
      float* o = out + ((b * L + i) * n_heads + h) * head_dim;
      if (i < pad[b]) {
        std::memset(o, 0, sizeof(float) * head_dim);
        continue;
      }
      const float* qr = q + (b * L + i) * q_stride + h * head_dim;
      const int64_t first = b * L + pad[b];  // first real key of row b
      attend(qr, k + first * kv_stride + kvh * head_dim, v + first * kv_stride + kvh * head_dim, kv_stride,
             i - pad[b] + 1, o, head_dim, scale);
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
