// kernels/cpu/attention.cpp — causal prefill attention of a pre-padded group and per-sequence decode
// attention, both through the GEMM-shaped tile kernel of attention_kernels.h (online softmax over blocks of keys:
// memory O(block) per thread, never [L, L]); prefill runs tiles of queries against each key block.
//
// In:  queries and keys/values as strided rows, or the paged KV cache through block tables (see ops.h).
// Out: dense [rows, n_heads, head_dim].
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

constexpr int64_t kQueryTile = 64;  // prefill: queries of one (row, head) that share each transposed key block

void check_head_dim(int64_t head_dim) {
  if (head_dim > 256) throw Error("cpu backend: attention: head_dim " + std::to_string(head_dim) + " > 256");
}

// Prefill's tasks: tiles of up to kQueryTile consecutive real positions of one row, for `hg` query heads that share
// a KV head (GQA: the tile kernel, attention_kernels.h, transposes each key block once for all their queries), or
// for one head when that would leave threads idle. A row's pad queries are written as zeros. tile(b, h0, hg, q0, nq)
// runs positions [q0, q0 + nq) of row b, heads [h0, h0 + hg) (q0 >= the row's pad).
template <typename Tile>
void prefill_tiles(const int32_t* pad, float* out, int64_t B, int64_t L, int64_t n_heads, int64_t n_kv_heads,
                   int64_t head_dim, Tile&& tile) {
  const int64_t n_tiles = (L + kQueryTile - 1) / kQueryTile;  // per row, at most
  const int64_t hg = B * n_kv_heads * n_tiles >= 4 * omp_get_max_threads() ? n_heads / n_kv_heads : 1;
  const int64_t n_groups = n_heads / hg;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t bg = 0; bg < B * n_groups; ++bg) {
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int64_t b = bg / n_groups, h0 = bg % n_groups * hg, p = pad[b];
      if (t == 0) {
        for (int64_t i = 0; i < p; ++i)
          std::memset(out + ((b * L + i) * n_heads + h0) * head_dim, 0, sizeof(float) * head_dim * hg);
      }
      const int64_t q0 = p + t * kQueryTile;  // the tile's first query column
      if (q0 < L) tile(b, h0, hg, q0, std::min(kQueryTile, L - q0));
    }
  }
}

}  // namespace

// Keys from the group's own rows: blocks start at the row's first real key.
void attention_prefill(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
                       const int32_t* pad, float* out, int64_t B, int64_t L, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, float scale) {
  check_head_dim(head_dim);
  const auto attend = detail::active_kernels().attend;
  const int64_t group = n_heads / n_kv_heads, out_stride = n_heads * head_dim;
  prefill_tiles(pad, out, B, L, n_heads, n_kv_heads, head_dim,
                [&](int64_t b, int64_t h0, int64_t hg, int64_t q0, int64_t nq) {
                  const int64_t p = pad[b], kv = (b * L + p) * kv_stride + h0 / group * head_dim;
                  attend(q + (b * L + q0) * q_stride + h0 * head_dim, q_stride, k + kv, v + kv, DType::F32, kv_stride,
                         KvPages{}, nq, q0 - p + 1, 1, hg, head_dim, out + ((b * L + q0) * n_heads + h0) * head_dim,
                         out_stride, head_dim, scale);
                });
}

void attention_decode(const float* q, int64_t q_stride, const void* cache_k, const void* cache_v, DType cache_type,
                      const int32_t* tables, int64_t table_stride, const int32_t* starts, const int32_t* lens,
                      float* out, int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t block_size,
                      float scale) {
  const size_t elem = dtype_size(cache_type);
  check_head_dim(head_dim);
  const auto attend = detail::active_kernels().attend;
  // A task is one KV head of one sequence with the query heads that read it (GQA): each key block is transposed
  // once for all of them. With too few such tasks to keep every thread busy (one sequence of SmolLM2: 3 KV heads
  // on 2 threads) a task is one query head instead.
  const int64_t group_all = n_heads / n_kv_heads, cache_heads = n_kv_heads;
  const bool by_kv_head = B * n_kv_heads >= 4 * omp_get_max_threads();
  const int64_t group = by_kv_head ? group_all : 1;
  n_kv_heads = by_kv_head ? n_kv_heads : n_heads;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bk = 0; bk < B * n_kv_heads; ++bk) {
    const int64_t b = bk / n_kv_heads, h0 = (bk % n_kv_heads) * group, kvh = h0 / group_all;
    const int64_t head = kvh * block_size * head_dim;  // the head's rows within a block
    const KvPages pages{tables + b * table_stride, block_size, cache_heads * block_size * head_dim, starts[b]};
    attend(q + b * q_stride + h0 * head_dim, head_dim, static_cast<const char*>(cache_k) + head * elem,
           static_cast<const char*>(cache_v) + head * elem, cache_type, head_dim, pages, group, lens[b], 0, 1, 0,
           out + (b * n_heads + h0) * head_dim, head_dim, head_dim, scale);
  }
}

// Keys from the paged cache: the row's positions [0, cached + the query's column), through its block table.
void attention_prefill_paged(const float* q, int64_t q_stride, const void* cache_k, const void* cache_v,
                             DType cache_type, const int32_t* tables, int64_t table_stride, const int32_t* pad,
                             const int32_t* cached, float* out, int64_t B, int64_t L, int64_t n_heads,
                             int64_t n_kv_heads, int64_t head_dim, int64_t block_size, float scale) {
  const size_t elem = dtype_size(cache_type);
  check_head_dim(head_dim);
  const auto attend = detail::active_kernels().attend;
  const int64_t group = n_heads / n_kv_heads, out_stride = n_heads * head_dim;
  const int64_t block_stride = n_kv_heads * block_size * head_dim;
  prefill_tiles(
      pad, out, B, L, n_heads, n_kv_heads, head_dim, [&](int64_t b, int64_t h0, int64_t hg, int64_t q0, int64_t nq) {
        const size_t head = static_cast<size_t>(h0 / group * block_size * head_dim) * elem;  // in a block
        const KvPages pages{tables + b * table_stride, block_size, block_stride, 0};
        attend(q + (b * L + q0) * q_stride + h0 * head_dim, q_stride, static_cast<const char*>(cache_k) + head,
               static_cast<const char*>(cache_v) + head, cache_type, head_dim, pages, nq, cached[b] + q0 - pad[b] + 1,
               1, hg, head_dim, out + ((b * L + q0) * n_heads + h0) * head_dim, out_stride, head_dim, scale);
      });
}

}  // namespace tessera::ops
