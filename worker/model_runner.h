// worker/model_runner.h — what the engine needs from a backend: a model with its own KV cache, run as
// pre-padded prefill groups and per-sequence decode steps, returning host logits [rows, vocab] on TP rank 0.
//
// KV: a paged cache of blocks (kernels/backend.h); the coordinator's BlockPool decides which block holds what, and
// every prefill row and decode row comes with its block table (forward.h's BlockTables).
// CpuRunner (below) is the Transformer of worker/model on the CPU; the CUDA backend implements the same
// interface on the device. Sampling: prefill_and_sample() / decode_and_sample() run the step and sample each row;
// by default on the host (worker/sampler.h over the logits above); a runner that samples_on_device() does it
// next to its logits so that only the tokens and logprobs reach the host. Not thread-safe: one engine loop
// drives a runner.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "worker/model/transformer.h"
#include "worker/sampler.h"

namespace tessera::worker {

// One row to sample: the sequence's settings, its decode step, its generated-token counts and its lists
// (logit_bias, min_tokens' stop ids, prompt tokens; nullptr: all empty). The engine owns the state; the
// pointers are valid for the call.
struct SampleRequest {
  const SamplingParams* params = nullptr;
  uint64_t step = 0;
  const std::unordered_map<int32_t, int32_t>* counts = nullptr;
  const SamplingLists* lists = nullptr;
};

// worker/sampler.h over host logits [rows.size(), V], row by row (what a runner without device sampling does).
// Empty logits (a TP rank other than 0): no results.
inline std::vector<sampler::SampleResult> sample_on_host(const std::vector<float>& logits, int64_t V,
                                                         std::span<const SampleRequest> rows) {
  std::vector<sampler::SampleResult> out;
  if (logits.empty()) return out;
  out.reserve(rows.size());
  for (size_t b = 0; b < rows.size(); ++b) {
    const auto row = std::span<const float>(logits).subspan(b * static_cast<size_t>(V), static_cast<size_t>(V));
    static const SamplingLists kNoLists;
    const SamplingLists& lists = rows[b].lists != nullptr ? *rows[b].lists : kNoLists;
    out.push_back(sampler::sample(row, *rows[b].params, rows[b].step, *rows[b].counts, lists));
  }
  return out;
}

// What configure() is asked for (StepPlan kConfigure) and what it allocated.
struct KvRequest {
  int64_t max_seqs = 0;     // sequences at once
  int64_t max_ctx = 0;      // tokens per sequence at most
  int64_t block_size = 16;  // tokens per KV block (a backend with one block per sequence uses max_ctx)
  size_t memory_bytes = 0;  // the CPU cache's byte budget, every layer; 0: max_seqs sequences of max_ctx tokens
};
struct KvGeometry {
  int64_t n_seqs = 0;      // sequences at once (<= max_seqs: an accelerator's budget may hold fewer)
  int64_t n_blocks = 0;    // KV blocks, the same on every TP rank
  int64_t block_size = 0;  // tokens per block
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const model::ModelConfig& config() const = 0;
  // (Re)allocates the KV cache (drops everything cached). Throws tessera::Error when not even one block or one
  // sequence fits (the message names the budget).
  virtual KvGeometry configure(const KvRequest& request) = 0;
  virtual KvGeometry kv_geometry() const = 0;  // zeros before configure()
  // The slot layout (tests, tools): n_slots sequences with one block of max_ctx tokens each (block id = slot).
  KvGeometry configure_slots(int64_t n_slots, int64_t max_ctx) { return configure({n_slots, max_ctx, max_ctx, 0}); }
  std::vector<float> decode_slots(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                                  const std::vector<int32_t>& positions) {
    return decode(tokens, BlockTables::slots(slots), positions);
  }
  // Logits [B, vocab] of each row's last prompt token (empty on TP ranks other than 0).
  virtual std::vector<float> prefill(const PrefillGroup& group) = 0;
  // tokens, positions: [B]; tables: [B] rows; returns logits [B, vocab] (empty on TP ranks other than 0).
  virtual std::vector<float> decode(const std::vector<int32_t>& tokens, const BlockTables& tables,
                                    const std::vector<int32_t>& positions) = 0;
  // The step and its sampling: one result per row (rows: [B], in the group's / tokens' order) on TP rank 0, empty
  // elsewhere; the same tokens as worker/sampler.h over the logits (a device sampler: see its precision
  // contract). Errors (a non-finite logit) throw tessera::Error naming the row.
  virtual bool samples_on_device() const { return false; }
  virtual std::vector<sampler::SampleResult> prefill_and_sample(const PrefillGroup& group,
                                                                std::span<const SampleRequest> rows) {
    return sample_on_host(prefill(group), config().vocab, rows);
  }
  virtual std::vector<sampler::SampleResult> decode_and_sample(const std::vector<int32_t>& tokens,
                                                               const BlockTables& tables,
                                                               const std::vector<int32_t>& positions,
                                                               std::span<const SampleRequest> rows) {
    return sample_on_host(decode(tokens, tables, positions), config().vocab, rows);
  }
};

// The CPU: blocks of request.block_size tokens, as many as the byte budget holds.
class CpuRunner final : public ModelRunner {
 public:
  explicit CpuRunner(Transformer& model) : model_(model) {}
  const model::ModelConfig& config() const override { return model_.config(); }
  KvGeometry configure(const KvRequest& r) override;
  KvGeometry kv_geometry() const override { return geometry_; }
  std::vector<float> prefill(const PrefillGroup& group) override { return model_.prefill(group, *cache_); }
  std::vector<float> decode(const std::vector<int32_t>& tokens, const BlockTables& tables,
                            const std::vector<int32_t>& positions) override {
    return model_.decode(tokens, tables, positions, *cache_);
  }

 private:
  Transformer& model_;
  std::optional<KvCache> cache_;
  KvGeometry geometry_;
};

}  // namespace tessera::worker
