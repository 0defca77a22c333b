// kernels/cpu/attention.cpp — causal prefill attention of a pre-padded group and per-sequence decode
// attention, both through the GEMM-shaped tile kernel of attention_kernels.h (online softmax over blocks of keys:
// memory O(block) per thread, never [L, L]); prefill runs tiles of queries against each key block.
//
// In:  queries and keys/values as strided rows (see ops.h).  Out: dense [rows, n_heads, head_dim].
// Guarantees: pad keys are never read; pad query rows are written as zeros; the result of a row does not
// depend on the other rows of the group or on its pad offset (same arithmetic order for the same keys).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include <omp.h>

#include "common/check.h"
#include "kernels/cpu/isa.h"
#include "kernels/ops.h"

namespace tessera::ops {
namespace {

constexpr int64_t kQueryTile = 32;  // prefill: queries of one (row, head) that share each transposed key block

void check_head_dim(int64_t head_dim) {
  if (head_dim > 256) throw Error("cpu backend: attention: head_dim " + std::to_string(head_dim) + " > 256");
}

}  // namespace

// A task is a tile of up to kQueryTile consecutive real queries of one (row, head): the tile kernel
// (attention_kernels.h) reads each key block once for all of them. Blocks start at the row's first real key.
void attention_prefill(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
                       const int32_t* pad, float* out, int64_t B, int64_t L, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, float scale) {
  check_head_dim(head_dim);
  const auto attend = detail::active_kernels().attend;
  const int64_t group = n_heads / n_kv_heads, out_stride = n_heads * head_dim;
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
      attend(q + (b * L + q0) * q_stride + h * head_dim, q_stride, k + (b * L + p) * kv_stride + kvh * head_dim,
             v + (b * L + p) * kv_stride + kvh * head_dim, DType::F32, kv_stride, nq, q0 - p + 1, 1,
             out + ((b * L + q0) * n_heads + h) * head_dim, out_stride, head_dim, scale);
    }
  }
}

void attention_decode(const float* q, int64_t q_stride, const float* cache_k, const float* cache_v,
                      const int32_t* slots, const int32_t* starts, const int32_t* lens, float* out, int64_t B,
                      int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale) {
  attention_decode(q, q_stride, cache_k, cache_v, DType::F32, slots, starts, lens, out, B, n_heads, n_kv_heads,
                   head_dim, max_ctx, scale);
}

void attention_decode(const float* q, int64_t q_stride, const void* cache_k, const void* cache_v, DType cache_type,
                      const int32_t* slots, const int32_t* starts, const int32_t* lens, float* out, int64_t B,
                      int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale) {
  const size_t elem = dtype_size(cache_type);
  check_head_dim(head_dim);
  const auto attend = detail::active_kernels().attend;
  // A task is one KV head of one sequence with the query heads that read it (GQA): each key block is transposed
  // once for all of them. With too few such tasks to keep every thread busy (one sequence of SmolLM2: 3 KV heads
  // on 2 threads) a task is one query head instead.
  const int64_t group_all = n_heads / n_kv_heads;
  const bool by_kv_head = B * n_kv_heads >= 4 * omp_get_max_threads();
  const int64_t group = by_kv_head ? group_all : 1;
  n_kv_heads = by_kv_head ? n_kv_heads : n_heads;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bk = 0; bk < B * n_kv_heads; ++bk) {
    const int64_t b = bk / n_kv_heads, h0 = (bk % n_kv_heads) * group, kvh = h0 / group_all;
    const int64_t base =
        ((static_cast<int64_t>(slots[b]) * (n_heads / group_all) + kvh) * max_ctx + starts[b]) * head_dim;
    attend(q + b * q_stride + h0 * head_dim, head_dim, static_cast<const char*>(cache_k) + base * elem,
           static_cast<const char*>(cache_v) + base * elem, cache_type, head_dim, group, lens[b], 0,
           out + (b * n_heads + h0) * head_dim, head_dim, head_dim, scale);
  }
}

}  // namespace tessera::ops
