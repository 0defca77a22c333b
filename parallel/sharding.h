// parallel/sharding.h — Megatron tensor-parallel sharding rules as pure functions of
// (model shape, TP rank, TP size): which heads, FFN columns and vocabulary rows a rank owns.
//
//   Q, K, V projections  split by heads (rows of [out, in]); GQA K/V heads split, or replicated when
//                        TP > n_kv_heads (each rank keeps the one K/V head its query heads read)
//   attention output     split by input features (columns); partial sums all-reduced
//   FFN up / gate        split by rows;  FFN down split by columns, all-reduced
//   embedding, lm_head   split by vocabulary rows (the last shard may be shorter)
//   norms, biases of row-split layers: replicated; those biases are added once, after the reduce
// A TP size the shape cannot take is refused with a message listing the sizes that work.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::parallel {

struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

// The dimensions sharding looks at (kept free of the model's types so that parallel/ depends on nothing).
struct ShardShape {
  int64_t n_heads = 0, n_kv_heads = 0, ffn = 0, vocab = 0;
};

struct Shard {
  int tp_rank = 0, tp_size = 1;
  Range q_heads;   // query heads owned
  Range kv_heads;  // K/V heads owned (one replicated head when tp_size > n_kv_heads)
  Range ffn;       // FFN intermediate features owned
  Range vocab;     // embedding / lm_head rows owned
};

// Every TP size in [1, max_size] that `shape` can be split into.
std::vector<int> valid_tp_sizes(const ShardShape& shape, int max_size = 64);
// Throws tessera::Error ("tensor-parallel size 2 does not divide the 9 attention heads; sizes that work: 1, 3, 9")
// when the shape cannot be split tp_size ways.
void check_tp_size(const ShardShape& shape, int tp_size);
Shard make_shard(const ShardShape& shape, int tp_rank, int tp_size);

}  // namespace tessera::parallel
