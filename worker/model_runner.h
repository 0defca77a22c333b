// worker/model_runner.h — what the engine needs from a backend: a model with its own KV cache, run as
// pre-padded prefill groups and per-sequence decode steps, returning host logits [rows, vocab] on TP rank 0.
//
// CpuRunner (below) is the Transformer of worker/model on the CPU; the CUDA backend implements the same
// interface on the device. Not thread-safe: one engine loop drives a runner.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "worker/model/transformer.h"

namespace tessera::worker {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const model::ModelConfig& config() const = 0;
  // (Re)allocates the KV cache for n_slots sequences of up to max_ctx tokens; drops every cached sequence.
  virtual void configure(int64_t n_slots, int64_t max_ctx) = 0;
  virtual int64_t n_slots() const = 0;  // 0 before configure()
  // Logits [B, vocab] of each row's last prompt token (empty on TP ranks other than 0).
  virtual std::vector<float> prefill(const PrefillGroup& group) = 0;
  // tokens, slots, positions: [B]; returns logits [B, vocab] (empty on TP ranks other than 0).
  virtual std::vector<float> decode(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                                    const std::vector<int32_t>& positions) = 0;
};

class CpuRunner final : public ModelRunner {
 public:
  explicit CpuRunner(Transformer& model) : model_(model) {}
  const model::ModelConfig& config() const override { return model_.config(); }
  void configure(int64_t n_slots, int64_t max_ctx) override {
    cache_.reset();  // free the old cache before allocating the new one
    cache_.emplace(model_.make_cache(n_slots, max_ctx));
  }
  int64_t n_slots() const override { return cache_ ? cache_->n_slots() : 0; }
  std::vector<float> prefill(const PrefillGroup& group) override { return model_.prefill(group, *cache_); }
  std::vector<float> decode(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                            const std::vector<int32_t>& positions) override {
    return model_.decode(tokens, slots, positions, *cache_);
  }

 private:
  Transformer& model_;
  std::optional<KvCache> cache_;
};

}  // namespace tessera::worker
