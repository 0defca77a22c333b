// parallel/transport.h — the coordinator ⇄ worker wire: one StepPlan out per step (broadcast to every worker),
// one StepResult back (from tensor-parallel rank 0), both versioned and length-checked.
//
// A step releases finished slots, runs at most one pre-padded prefill group and a batch of decodes (continuous
// batching: both in one step), and samples one token per row on TP rank 0. Workers keep per-slot sampling
// state (params, step counter, generated-token counts) from the prefill that opened the slot until it is
// released, so a decode row carries only (token, slot, position).
// Dispatcher is the one interface the coordinator drives: in-process at TP = 1 (worker/local_dispatcher.h),
// over MPI otherwise (parallel/mpi_dispatcher.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/sampling.h"

namespace tessera::parallel {

inline constexpr uint32_t kWireMagic = 0x54455353;  // "TESS"
// 2: StepResult carries n_slots (the KV slots a kConfigure allocated).
inline constexpr uint32_t kWireVersion = 2;

struct StepPlan {
  enum class Kind : uint32_t { kStep = 1, kConfigure = 2, kShutdown = 3 };
  Kind kind = Kind::kStep;
  uint64_t step_id = 0;
  // kConfigure: (re)allocate the KV cache.
  int32_t n_slots = 0, max_ctx = 0;
  // kStep, in this order: release slots, prefill group (rows first in the result), decodes.
  std::vector<int32_t> release_slots;
  int32_t prefill_cols = 0;                                            // L
  std::vector<int32_t> prefill_tokens;                                 // [B, L] left-padded
  std::vector<int32_t> prefill_pad;                                    // [B]
  std::vector<int32_t> prefill_slots;                                  // [B]
  std::vector<SamplingParams> prefill_sampling;                        // [B], sent as bytes
  std::vector<int32_t> decode_tokens, decode_slots, decode_positions;  // [D]
  int64_t n_rows() const { return static_cast<int64_t>(prefill_pad.size() + decode_tokens.size()); }
};

struct TopLogprob {
  int32_t token;
  float logprob;
};

struct StepResult {
  uint64_t step_id = 0;
  std::vector<int32_t> tokens;                        // [B + D]: prefill rows, then decode rows
  std::vector<float> logprobs;                        // [B + D]
  std::vector<std::vector<TopLogprob>> top_logprobs;  // [B + D], each n_logprobs long
  // kConfigure: the KV slots the workers allocated, the same on every rank; at most the plan's n_slots, fewer
  // when the accelerator's KV budget (backend.kv_memory_fraction) holds fewer. 0 for other kinds.
  int32_t n_slots = 0;
  std::string error;  // non-empty: the step failed on the workers (the message names the rank)
  double step_seconds = 0.0, collective_seconds = 0.0;  // TP rank 0's timings of this step
};

// The one builder of pre-padded prefill rows: appends `prompt` left-padded to `cols` columns (pad token 0, which
// no row attends to) to `tokens` ([B, cols] row-major) and its pad (cols - prompt length) to `pad`.
// TESSERA_CHECKs that the prompt fits.
void append_left_padded(std::vector<int32_t>& tokens, std::vector<int32_t>& pad, int32_t cols,
                        std::span<const int32_t> prompt);

std::vector<uint8_t> encode_plan(const StepPlan& plan);
std::vector<uint8_t> encode_result(const StepResult& result);
// Throw tessera::Error on a wrong magic, a version mismatch ("wire version 2, this build speaks 1") or a
// size that does not add up.
StepPlan decode_plan(std::span<const uint8_t> bytes);
StepResult decode_result(std::span<const uint8_t> bytes);

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // Runs one plan on every worker and returns TP rank 0's result. Throws tessera::Error when the cluster
  // failed (a rank died, a collective failed, a wire mismatch).
  virtual StepResult run(const StepPlan& plan) = 0;
  virtual int tp_size() const = 0;
};

}  // namespace tessera::parallel
