// coordinator/generate.h — batch generation through a Dispatcher, run by the serving Scheduler
// (coordinator/scheduler): the same admission, pre-padded prefill groups, decode steps, result checks and
// stop/length decisions as `tessera serve`, with every request queued up front and the queue drained.
//
// In: GenerateRequests (token ids + limits + sampling).  Out: the generated ids, their logprobs and why each
// stopped.  Every sequence samples with its own (seed, step) stream on the workers, so its tokens do not
// depend on which other requests share the batch, on its pad offset or on the tensor-parallel size.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "parallel/transport.h"
#include "common/sampling.h"

namespace tessera::coordinator {

struct GenerateRequest {
  std::vector<int32_t> prompt;  // non-empty
  int32_t max_tokens = 16;      // >= 1
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;      // generation ends after emitting one of these (it is kept in the output)
  std::vector<LogitBias> logit_bias;  // distinct tokens, at most kMaxLogitBias (common/sampling.h)
};

struct GenerateResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::string finish_reason;  // "stop" or "length"
  int32_t cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache
};

// How the batch runs (defaults: every request admitted at once if the KV cache holds them, blocks of 16, prefix
// caching on, the CPU cache sized for the batch).
struct BatchOptions {
  int32_t max_running = 0;  // > 0: at most this many sequences at once (the rest wait, as in serving)
  int32_t block_size = 16;
  bool prefix_caching = true;
  uint64_t kv_bytes = 0;  // the CPU KV cache's budget; 0: max_running sequences of the longest request
};

struct ModelLimits {
  int64_t vocab = 0;
  int64_t max_ctx = 0;
};

// What the workers reported (TP rank 0's clocks), summed over the run's steps.
struct GenerateStats {
  uint64_t steps = 0;
  double step_seconds = 0.0;        // time inside the workers' steps
  double collective_seconds = 0.0;  // of which in all-reduces and gathers
};

// Called after each sampled token: (request index, token).
using TokenCallback = std::function<void(size_t, int32_t)>;

// Throws tessera::Error when a request is invalid (empty prompt, ids outside the vocabulary, prompt + max_tokens
// longer than the model's context, bad sampling parameters), naming the request and the field, before anything
// is sent; and when the cluster fails.
std::vector<GenerateResult> generate(parallel::Dispatcher& dispatcher, const ModelLimits& limits,
                                     const std::vector<GenerateRequest>& requests, const TokenCallback& on_token = {},
                                     GenerateStats* stats = nullptr, const BatchOptions& options = {});

}  // namespace tessera::coordinator
