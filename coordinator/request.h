// coordinator/request.h — the contract between the HTTP/API threads and the scheduler thread.
//
// The api layer turns a JSON body into a Request (prompt ids, limits, sampling, n, stop ids) and submits it;
// the scheduler runs it in the batch and reports every sampled token and every finished sequence through the
// request's RequestSink, from the scheduler thread. The scheduler decides every finish reason: stop (a stop id,
// or a stop string the sink reported as on_token's verdict), length, abort (cancelled, timed out, stopped),
// error (the cluster failed). The sink must not block (the HTTP side queues and wakes
// its connection). A client that disconnects calls cancel(): the scheduler frees the request's slots at the
// next step and finishes it with reason "abort".
// Thread-safety: Request is immutable after submit() except `cancelled_`, which any thread may set.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/sampling.h"

namespace tessera::coordinator {

using SteadyClock = std::chrono::steady_clock;

struct TokenEvent {
  int32_t seq = 0;  // which of the request's n sequences (0..n-1)
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top_logprobs;
  // On a sequence's first token: prompt tokens whose KV came from the prefix cache (OpenAI's
  // usage.prompt_tokens_details.cached_tokens); -1 on later tokens.
  int32_t cached_tokens = -1;
};

enum class FinishReason { kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort", "error"

// What the sink saw in a token: kStop when its text completed a stop string (the scheduler then finishes the
// sequence with kStop at once — frees its slot, counts it as "stop" — whatever its siblings do).
enum class TokenVerdict { kContinue, kStop };

class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual TokenVerdict on_token(const TokenEvent& ev) = 0;
  // Once per sequence, decided by the scheduler. `message` is set for kError.
  virtual void on_finish(int32_t seq, FinishReason reason, const std::string& message) = 0;
};

struct Request {
  uint64_t id = 0;
  std::vector<int32_t> prompt;  // non-empty, validated against the vocabulary and the context
  int32_t max_tokens = 16;
  int32_t n = 1;  // sequences; sequence i samples with seed + i
  SamplingParams sampling;
  // Token ids that end a sequence: eos, <|im_end|> unless ignore_eos, and stop_token_ids. While fewer than
  // sampling.min_tokens tokens were generated, the workers cannot sample them.
  std::vector<int32_t> stop_ids;
  std::vector<LogitBias> logit_bias;  // distinct tokens, at most kMaxLogitBias
  SteadyClock::time_point arrival = SteadyClock::now();
  SteadyClock::time_point deadline = SteadyClock::time_point::max();  // per-request timeout → abort
  std::shared_ptr<RequestSink> sink;

  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
};

// Why submit() refused a request; the api layer maps these to HTTP (kQueueFull → 429 + Retry-After,
// kDraining → 503 + Retry-After, kInvalid → 400).
enum class SubmitStatus { kAccepted, kQueueFull, kDraining, kInvalid };

}  // namespace tessera::coordinator
