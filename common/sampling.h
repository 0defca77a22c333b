// common/sampling.h — a sequence's sampling settings: the one type the API, the CLI, the scheduler, the wire
// (parallel/transport.h sends it as is), the CPU sampler (worker/sampler.h) and the GPU sampler
// (kernels/cuda/cuda_ops.h) share, with its one validator and each limit defined once.
//
// Semantics (vLLM / OpenAI): penalties over generated tokens, then temperature (below kGreedyTemperature:
// greedy), top-k, top-p, and a seeded draw; worker/sampler.h documents the order and the guarantees.
// Trivially copyable (it crosses the wire and is copied to the GPU byte for byte); first_invalid() runs on the
// device too, so the GPU sampler checks the same ranges.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

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
inline constexpr int32_t kMaxLogprobs = 20;  // top logprobs per token (OpenAI's top_logprobs limit)
inline constexpr float kMaxPenalty = 2.0f;   // OpenAI's range for both penalties is [-2, 2]

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

  TESSERA_HOST_DEVICE bool greedy() const { return temperature < kGreedyTemperature; }

  // The first field out of its range, or nullptr when every field is valid (host and device).
  TESSERA_HOST_DEVICE const char* first_invalid() const {
    if (!(temperature >= 0.0f && temperature <= 3.402823466e38f)) return "temperature";  // NaN and inf fail
    if (!(top_p > 0.0f && top_p <= 1.0f)) return "top_p";
    if (top_k < -1) return "top_k";
    if (!(presence_penalty >= -kMaxPenalty && presence_penalty <= kMaxPenalty)) return "presence_penalty";
    if (!(frequency_penalty >= -kMaxPenalty && frequency_penalty <= kMaxPenalty)) return "frequency_penalty";
    if (n_logprobs < 0 || n_logprobs > kMaxLogprobs) return "n_logprobs";
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
    throw Error("n_logprobs must be in [0, " + std::to_string(kMaxLogprobs) + "], got " + std::to_string(n_logprobs));
  }
};
static_assert(std::is_trivially_copyable_v<SamplingParams>, "it crosses the wire and goes to the GPU as bytes");

}  // namespace tessera
