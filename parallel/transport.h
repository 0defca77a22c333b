// parallel/transport.h — the coordinator ⇄ worker wire: one StepPlan out per step (broadcast to every worker),
// one StepResult back (from tensor-parallel rank 0), both versioned and length-checked.
//
// A step releases finished sequence slots, runs at most one pre-padded prefill group and a batch of decodes
// (continuous batching: both in one step), and samples one token per row on TP rank 0. A slot is a sequence's
// sampling state on the workers (params, step counter, generated-token counts), kept from the prefill that opened
// it until it is released, so a decode row carries only (token, slot, position). Its KV lives in blocks of the
// paged cache: every row carries its block table (the coordinator's BlockPool chose the blocks), and a prefill
// row may start after a prefix already cached in them (prefix caching) or resume a preempted sequence.
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
// 3: the paged KV cache: block tables, cached prefixes, resumed sequences, the block geometry.
// 4: SamplingParams gains min_p, repetition_penalty and min_tokens; the prefill rows' SamplingLists.
inline constexpr uint32_t kWireVersion = 4;

struct StepPlan {
  enum class Kind : uint32_t { kStep = 1, kConfigure = 2, kShutdown = 3 };
  Kind kind = Kind::kStep;
  uint64_t step_id = 0;
  // kConfigure: (re)allocate the KV cache (worker/model_runner.h's KvRequest): up to n_slots sequences of up to
  // max_ctx tokens, in blocks of block_size tokens (0: max_ctx), within kv_bytes (the CPU's budget; 0: n_slots ·
  // max_ctx tokens).
  int32_t n_slots = 0, max_ctx = 0, block_size = 0;
  uint64_t kv_bytes = 0;
  // kStep, in this order: release slots, prefill group (rows first in the result), decodes.
  std::vector<int32_t> release_slots;
  int32_t prefill_cols = 0;                      // L
  std::vector<int32_t> prefill_tokens;           // [B, L] left-padded: each row's tokens after its cached prefix
  std::vector<int32_t> prefill_pad;              // [B]
  std::vector<int32_t> prefill_slots;            // [B]
  std::vector<int32_t> prefill_cached;           // [B]: positions already in the row's KV blocks
  std::vector<SamplingParams> prefill_sampling;  // [B], sent as bytes
  // A preempted sequence resuming: the tokens it generated before (their counts, and its sampler's step);
  // prefill_history_len [B] (0 for a new sequence), prefill_history their concatenation.
  std::vector<int32_t> prefill_history_len, prefill_history;
  // Each prefill row's SamplingLists (common/sampling.h), sent once when the row opens its slot and kept with it:
  // per list a length per row [B] (or none at all: every row's list is empty) and the rows' concatenation.
  // Wire cost (measured on the seeds of fuzz/make_seeds.py): 48 bytes per plan for the six vector headers (a
  // plan without prefill rows: 152 → 200 bytes); per prefill row 8 more bytes of SamplingParams (40 → 48), 4 per
  // list some row of the group uses, 8 per logit_bias entry, 4 per stop id (only with min_tokens > 0) and 4 per
  // distinct prompt token (only with a repetition penalty). Decode rows carry nothing more. 300 bias entries:
  // 2.4 KB once per sequence, where a fixed array in SamplingParams would cost 2.4 KB per row in every plan
  // that admits one and in every step's copy of the params to the GPU.
  std::vector<int32_t> prefill_bias_len;
  std::vector<LogitBias> prefill_bias;
  std::vector<int32_t> prefill_stop_len, prefill_stop;
  std::vector<int32_t> prefill_prompt_len, prefill_prompt;
  std::vector<int32_t> decode_tokens, decode_slots, decode_positions;  // [D]
  // Block tables, prefill rows then decode rows: [B + D, table_width] (a row's entries past its last block: -1).
  // table_width 0 (no tables): each row's one block is its slot, for a cache configured with block_size 0 (one
  // block of max_ctx tokens per sequence: the slot layout, what tests and tools write by hand).
  int32_t table_width = 0;
  std::vector<int32_t> tables;
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
  // kConfigure: the sequence slots and KV blocks the workers allocated, the same on every rank; n_slots at most the
  // plan's, fewer when the accelerator's KV budget (backend.kv_memory_fraction) holds fewer. 0 for other kinds.
  int32_t n_slots = 0, n_blocks = 0, block_size = 0;
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
