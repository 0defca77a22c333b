// worker/model/transformer.h — the forward pass of GPT-2 and Llama on the ops of kernels/ops.h.
//
// prefill(): one pre-padded group (EET): B prompts left-padded to L columns run as [B·L, hidden] GEMMs;
//   pad columns are skipped by attention and by the KV-cache write; returns the logits of each row's last
//   column.  decode(): one new token per sequence at its own position (= its current length), attention over
//   its own cached range.  Outputs do not depend on padding or on the other rows of the batch.
// Tensor parallelism: the weights hold one rank's shard (heads, FFN features, vocabulary rows); the two
// row-split projections of each layer are all-reduced through `tp`, the embedding is vocabulary-parallel
// (looked up where owned, all-reduced), and the logits of each rank's vocabulary rows are gathered to TP
// rank 0, the only rank whose returned logits are meaningful. Every call is collective over `tp`.
// Not thread-safe (owns scratch buffers); one per engine loop.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "worker/kv_cache.h"
#include "worker/model/weights.h"

namespace tessera::worker {

struct PrefillGroup {
  int64_t n_cols = 0;           // L: the longest prompt's length
  std::vector<int32_t> tokens;  // [B, L] left-padded; pad entries are ignored
  std::vector<int32_t> pad;     // [B]: pad columns of each row (L - prompt length)
  std::vector<int32_t> slots;   // [B]: KV slot of each row
  int64_t n_rows() const { return static_cast<int64_t>(pad.size()); }
  // Builds a group from prompts (each non-empty) and their slots.
  static PrefillGroup make(const std::vector<std::vector<int32_t>>& prompts, const std::vector<int32_t>& slots);
};

class Transformer {
 public:
  // tp == nullptr: a single rank (the weights must hold the whole model).
  explicit Transformer(model::ModelWeights weights, parallel::Communicator* tp = nullptr);

  const model::ModelConfig& config() const { return w_.config; }
  const model::ModelWeights& weights() const { return w_; }
  KvCache make_cache(int64_t n_slots, int64_t max_ctx) const;

  // Returns logits [B, vocab] of each row's last prompt token (on TP rank 0; other ranks get an empty vector).
  std::vector<float> prefill(const PrefillGroup& group, KvCache& cache);
  // tokens, slots, positions: [B]; returns logits [B, vocab].
  std::vector<float> decode(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                            const std::vector<int32_t>& positions, KvCache& cache);

 private:
  // Runs every layer over n rows of x_ ([n, hidden], the residual stream) and leaves the residual in x_.
  // attend(layer) computes attention from qkv_ into attn_ after the KV write.
  template <typename Attend>
  void layers(int64_t n, const int32_t* positions, const int32_t* kv_slots, const int32_t* kv_positions, KvCache& cache,
              Attend&& attend);
  std::vector<float> logits(const std::vector<int64_t>& rows);
  void embed(const int32_t* tokens, const int32_t* positions, int64_t n);
  // Sums partial results of the row-split projections over the TP group, then adds the replicated bias.
  void reduce_add_bias(float* y, const std::vector<float>& bias, int64_t n);

  model::ModelWeights w_;
  std::unique_ptr<parallel::Communicator> own_tp_;
  parallel::Communicator* tp_;
  int64_t n_heads_ = 0, n_kv_heads_ = 0, n_ffn_ = 0, vocab_local_ = 0;  // this rank's shard
  int64_t qkv_cols_ = 0;
  // Scratch, [n_rows, ...], grown on demand.
  std::vector<float> x_, h_, qkv_, attn_, proj_, ffn_, ffn_act_;
};

}  // namespace tessera::worker
