// common/sampling.h — a sequence's sampling settings: the one type the API, the CLI, the scheduler, the wire
// (parallel/transport.h sends it as is), the CPU sampler (worker/sampler.h) and the GPU sampler
// (kernels/cuda/cuda_ops.h) share, with its one validator and each limit defined once.
//
// Semantics (vLLM / OpenAI): logit_bias and the min_tokens mask, then penalties (repetition over prompt and
// generated tokens, presence / frequency over generated ones), temperature (below kGreedyTemperature: greedy),
// min-p, top-k, top-p, and a seeded draw; worker/sampler.h documents the order and the guarantees.
// SamplingParams is trivially copyable (it crosses the wire and is copied to the GPU byte for byte);
// first_invalid() runs on the device too, so the GPU sampler checks the same ranges.
//
// The variable-length settings (logit_bias entries, the ids min_tokens holds back, the prompt's tokens for the
// repetition penalty) are SamplingLists, kept out of SamplingParams: a fixed-capacity array of 300 bias pairs
// would make every SamplingParams 2.4 KB, copied to the GPU for every row of every step, for a field most
// requests leave empty. Like SamplingParams, the lists cross the wire once per sequence, when its prefill opens
// its slot (parallel/transport.h: 8 bytes per bias entry, 4 per id), and stay on the workers with the slot.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "common/check.h"

#if defined(__CUDACC__)
#define TESSERA_HOST_DEVICE __host__ __device__
#else
#define TESSERA_HOST_DEVICE
#endif

namespace tessera {

// Temperatures below this sample greedily (vLLM's _SAMPLING_EPS): dividing by them would only turn the
// distribution into a numerically noisy argmax.
inline constexpr float kGreedyTemperature = 1e-5f;
inline constexpr int32_t kMaxLogprobs = 20;           // top logprobs per token (OpenAI's top_logprobs limit)
inline constexpr float kMaxPenalty = 2.0f;            // OpenAI's range for both penalties is [-2, 2]
inline constexpr float kMaxRepetitionPenalty = 2.0f;  // (0, 2]; 1 is off
inline constexpr int32_t kMaxLogitBias = 300;         // entries per request (OpenAI's limit)
inline constexpr float kMaxLogitBiasValue = 100.0f;   // each bias in [-100, 100] (OpenAI's range)

struct SamplingParams {
  float temperature = 1.0f;        // >= 0, finite; < kGreedyTemperature → greedy
  float top_p = 1.0f;              // (0, 1]; 1 → off
  int32_t top_k = -1;              // -1 or 0 → off; >= vocab → off
  float presence_penalty = 0.0f;   // [-kMaxPenalty, kMaxPenalty], applied over generated tokens
  float frequency_penalty = 0.0f;  // [-kMaxPenalty, kMaxPenalty], applied over generated tokens
  // Every seed is valid, 0 included. A request without a seed gets one chosen by the coordinator. Two
  // sequences sampled with the same seed draw the same uniforms at the same steps.
  uint64_t seed = 0;
  int32_t n_logprobs = 0;  // top logprobs to return, 0..kMaxLogprobs
  // [0, 1]; 0 → off. After temperature, tokens whose probability is below min_p × the largest one are dropped.
  float min_p = 0.0f;
  // (0, kMaxRepetitionPenalty]; 1 → off. Over the prompt's and the generated tokens (each token once):
  // logit > 0 → logit / p, otherwise logit × p (vLLM / Hugging Face).
  float repetition_penalty = 1.0f;
  // >= 0: until this many tokens were generated, SamplingLists::stop_ids cannot be sampled.
  int32_t min_tokens = 0;

  TESSERA_HOST_DEVICE bool greedy() const { return temperature < kGreedyTemperature; }

  // The first field out of its range, or nullptr when every field is valid (host and device).
  TESSERA_HOST_DEVICE const char* first_invalid() const {
    if (!(temperature >= 0.0f && temperature <= 3.402823466e38f)) return "temperature";  // NaN and inf fail
    if (!(top_p > 0.0f && top_p <= 1.0f)) return "top_p";
    if (top_k < -1) return "top_k";
    if (!(presence_penalty >= -kMaxPenalty && presence_penalty <= kMaxPenalty)) return "presence_penalty";
    if (!(frequency_penalty >= -kMaxPenalty && frequency_penalty <= kMaxPenalty)) return "frequency_penalty";
    if (n_logprobs < 0 || n_logprobs > kMaxLogprobs) return "n_logprobs";
    if (!(min_p >= 0.0f && min_p <= 1.0f)) return "min_p";
    if (!(repetition_penalty > 0.0f && repetition_penalty <= kMaxRepetitionPenalty)) return "repetition_penalty";
    if (min_tokens < 0) return "min_tokens";
    return nullptr;
  }

  // Throws tessera::Error naming the offending field, its range and its value, e.g.
  // "temperature must be >= 0 and finite, got -1".
  void validate() const {
    const char* bad = first_invalid();
    if (bad == nullptr) return;
    const std::string field = bad;
    auto show = [](double v) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", v);
      return std::string(buf);
    };
    if (field == "temperature") throw Error("temperature must be >= 0 and finite, got " + show(temperature));
    if (field == "top_p") throw Error("top_p must be in (0, 1], got " + show(top_p));
    if (field == "top_k") throw Error("top_k must be -1 or 0 (off) or >= 1, got " + std::to_string(top_k));
    if (field == "presence_penalty") throw Error("presence_penalty must be in [-2, 2], got " + show(presence_penalty));
    if (field == "frequency_penalty")
      throw Error("frequency_penalty must be in [-2, 2], got " + show(frequency_penalty));
    if (field == "min_p") throw Error("min_p must be in [0, 1], got " + show(min_p));
    if (field == "repetition_penalty")
      throw Error("repetition_penalty must be in (0, 2], got " + show(repetition_penalty));
    if (field == "min_tokens") throw Error("min_tokens must be >= 0, got " + std::to_string(min_tokens));
    throw Error("n_logprobs must be in [0, " + std::to_string(kMaxLogprobs) + "], got " + std::to_string(n_logprobs));
  }
};
static_assert(std::is_trivially_copyable_v<SamplingParams>, "it crosses the wire and goes to the GPU as bytes");

struct LogitBias {
  int32_t token;
  float bias;  // added to the token's logit, in [-kMaxLogitBiasValue, kMaxLogitBiasValue]
};
static_assert(std::is_trivially_copyable_v<LogitBias>, "it crosses the wire as bytes");

// A sequence's variable-length sampling settings (see the top of this file). Every list may be empty.
struct SamplingLists {
  std::vector<LogitBias> logit_bias;  // distinct tokens, at most kMaxLogitBias
  // The ids that end the sequence (EOS unless ignore_eos, and stop_token_ids): masked to -inf while fewer than
  // SamplingParams::min_tokens tokens were generated. Sent only when min_tokens > 0.
  std::vector<int32_t> stop_ids;
  // The prompt's distinct tokens, ascending, for the repetition penalty. Sent only when it is not 1.
  std::vector<int32_t> prompt_tokens;
  bool empty() const { return logit_bias.empty() && stop_ids.empty() && prompt_tokens.empty(); }

  // Throws tessera::Error naming the list when an entry is out of range for a vocabulary of `vocab` tokens, a
  // bias is outside [-100, 100] or not finite, there are more than kMaxLogitBias entries, a token is biased
  // twice, or prompt_tokens is not ascending and distinct.
  void validate(int64_t vocab) const {
    auto in_vocab = [&](int32_t t) { return t >= 0 && t < vocab; };
    if (logit_bias.size() > static_cast<size_t>(kMaxLogitBias))
      throw Error("logit_bias has " + std::to_string(logit_bias.size()) + " entries, at most " +
                  std::to_string(kMaxLogitBias) + " are allowed");
    for (size_t i = 0; i < logit_bias.size(); ++i) {
      const LogitBias& e = logit_bias[i];
      if (!in_vocab(e.token))
        throw Error("logit_bias token " + std::to_string(e.token) + " is outside the vocabulary [0, " +
                    std::to_string(vocab) + ")");
      if (!(e.bias >= -kMaxLogitBiasValue && e.bias <= kMaxLogitBiasValue))
        throw Error("logit_bias of token " + std::to_string(e.token) + " must be in [-100, 100]");
      for (size_t j = 0; j < i; ++j)
        if (logit_bias[j].token == e.token) throw Error("logit_bias lists token " + std::to_string(e.token) + " twice");
    }
    for (int32_t t : stop_ids)
      if (!in_vocab(t)) throw Error("stop token id " + std::to_string(t) + " is outside the vocabulary");
    for (size_t i = 0; i < prompt_tokens.size(); ++i) {
      if (!in_vocab(prompt_tokens[i]))
        throw Error("prompt token " + std::to_string(prompt_tokens[i]) + " is outside the vocabulary");
      if (i > 0 && prompt_tokens[i] <= prompt_tokens[i - 1])
        throw Error("the repetition penalty's prompt tokens must be ascending and distinct");
    }
  }
};

}  // namespace tessera
