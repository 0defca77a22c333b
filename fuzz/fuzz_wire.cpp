// fuzz/fuzz_wire.cpp — the coordinator ⇄ worker wire (parallel/transport.h) on arbitrary bytes.
//
// Feeds: the input to decode_plan() and to decode_result() (both, every input).
// Must hold: a decoder throws tessera::Error or returns; anything else (another exception, a sanitizer report,
// an allocation past -rss_limit_mb) is a crash. What decodes re-encodes to the same number of bytes and decodes
// again, without an error, to equal fields (floats compared bit for bit).
#include <cstring>
#include <optional>
#include <span>

#include "common/check.h"
#include "fuzz/fuzz_support.h"
#include "parallel/transport.h"

namespace {

using tessera::SamplingParams;
using tessera::parallel::StepPlan;
using tessera::parallel::StepResult;
using tessera::parallel::TopLogprob;

template <typename T>
bool same_bits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

bool same(const SamplingParams& a, const SamplingParams& b) {
  // Field by field: the struct has padding, which the wire carries as it finds it.
  return same_bits(a.temperature, b.temperature) && same_bits(a.top_p, b.top_p) && a.top_k == b.top_k &&
         same_bits(a.presence_penalty, b.presence_penalty) && same_bits(a.frequency_penalty, b.frequency_penalty) &&
         a.seed == b.seed && a.n_logprobs == b.n_logprobs && same_bits(a.min_p, b.min_p) &&
         same_bits(a.repetition_penalty, b.repetition_penalty) && a.min_tokens == b.min_tokens;
}

bool same(const tessera::LogitBias& a, const tessera::LogitBias& b) {
  return a.token == b.token && same_bits(a.bias, b.bias);
}

bool same(const TopLogprob& a, const TopLogprob& b) { return a.token == b.token && same_bits(a.logprob, b.logprob); }
bool same(float a, float b) { return same_bits(a, b); }
bool same(int32_t a, int32_t b) { return a == b; }

template <typename T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!same(a[i], b[i])) return false;
  return true;
}

bool same(const StepPlan& a, const StepPlan& b) {
  return a.kind == b.kind && a.step_id == b.step_id && a.n_slots == b.n_slots && a.max_ctx == b.max_ctx &&
         a.block_size == b.block_size && a.kv_bytes == b.kv_bytes && same(a.release_slots, b.release_slots) &&
         a.prefill_cols == b.prefill_cols && same(a.prefill_tokens, b.prefill_tokens) &&
         same(a.prefill_pad, b.prefill_pad) && same(a.prefill_slots, b.prefill_slots) &&
         same(a.prefill_cached, b.prefill_cached) && same(a.prefill_sampling, b.prefill_sampling) &&
         same(a.prefill_history_len, b.prefill_history_len) && same(a.prefill_history, b.prefill_history) &&
         same(a.prefill_bias_len, b.prefill_bias_len) && same(a.prefill_bias, b.prefill_bias) &&
         same(a.prefill_stop_len, b.prefill_stop_len) && same(a.prefill_stop, b.prefill_stop) &&
         same(a.prefill_prompt_len, b.prefill_prompt_len) && same(a.prefill_prompt, b.prefill_prompt) &&
         same(a.decode_tokens, b.decode_tokens) && same(a.decode_slots, b.decode_slots) &&
         same(a.decode_positions, b.decode_positions) && a.table_width == b.table_width && same(a.tables, b.tables);
}

bool same(const StepResult& a, const StepResult& b) {
  return a.step_id == b.step_id && same(a.tokens, b.tokens) && same(a.logprobs, b.logprobs) &&
         same(a.top_logprobs, b.top_logprobs) && a.n_slots == b.n_slots && a.n_blocks == b.n_blocks &&
         a.block_size == b.block_size && a.error == b.error && same_bits(a.step_seconds, b.step_seconds) &&
         same_bits(a.collective_seconds, b.collective_seconds);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  // Only the first decode may throw: an Error from re-decoding what was encoded escapes and is a crash.
  std::optional<StepPlan> plan;
  try {
    plan = tessera::parallel::decode_plan(bytes);
    tessera::fuzz::note("fuzz_wire", "a StepPlan of " + std::to_string(plan->n_rows()) + " rows");
  } catch (const tessera::Error& e) {
    tessera::fuzz::note("fuzz_wire", e.what());
  }
  if (plan) {
    const std::vector<uint8_t> again = tessera::parallel::encode_plan(*plan);
    FUZZ_ASSERT("fuzz_wire", again.size() == size, "re-encoded StepPlan has another size");
    FUZZ_ASSERT("fuzz_wire", same(tessera::parallel::decode_plan(again), *plan), "StepPlan round trip differs");
  }
  std::optional<StepResult> result;
  try {
    result = tessera::parallel::decode_result(bytes);
    tessera::fuzz::note("fuzz_wire", "a StepResult of " + std::to_string(result->tokens.size()) + " rows");
  } catch (const tessera::Error& e) {
    tessera::fuzz::note("fuzz_wire", e.what());
  }
  if (result) {
    const std::vector<uint8_t> again = tessera::parallel::encode_result(*result);
    FUZZ_ASSERT("fuzz_wire", again.size() == size, "re-encoded StepResult has another size");
    FUZZ_ASSERT("fuzz_wire", same(tessera::parallel::decode_result(again), *result), "StepResult round trip differs");
  }
  return 0;
}
