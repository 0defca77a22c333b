// coordinator/scheduler/prefill_group_former.h — which waiting requests start together as one pre-padded
// prefill group this step. A pure function of the queue's shape, tested as a table.
//
// In: the waiting requests in arrival order, as (tokens to compute, sequences, KV blocks they take), and this
// step's limits (free sequence slots, free KV blocks, token budget left after the step's decodes, the padding
// bound).  Out: the queue indices of the group, its width L (the longest row), rows (sum of the sequences) and pad
// tokens. A request's tokens to compute are its prompt after the prefix already in the KV cache.
//
// Rules
// - FIFO fairness: the oldest waiting request is never skipped. If its sequences do not fit in the free slots
//   or its blocks in the free blocks, the group is empty (nothing younger may jump ahead and keep it waiting);
//   otherwise it opens the group even when rows × L exceeds the token budget (a prompt is never split, and it
//   must run some time).
// - Then every younger request, in arrival order, joins when the group still fits: rows ≤ free slots, blocks ≤
//   free blocks, rows × L ≤ token_budget, and the padding fraction pad / (rows × L) ≤ max_pad_fraction, where
//   pad = Σ_rows (L − prompt length). A request that does not fit is passed over (it stays waiting) and the
//   scan goes on, so similar lengths group together whatever their order.
// - A request with n sequences is n rows of the same prompt, all in the same group.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tessera::coordinator {

struct GroupCandidate {
  int32_t prompt_len = 0;  // ≥ 1: the tokens the group computes for each of its rows
  int32_t n_seqs = 1;      // ≥ 1
  int64_t blocks = 0;      // KV blocks admitting all its sequences takes
};

struct GroupLimits {
  int32_t free_slots = 0;
  int64_t token_budget = 0;  // for rows × L of the group
  double max_pad_fraction = 0.25;
  int64_t free_blocks = -1;  // KV blocks free (cached ones no sequence holds count); < 0: not counted
};

struct GroupChoice {
  std::vector<size_t> picked;  // ascending queue indices; empty: no group this step
  int32_t cols = 0;            // L
  int32_t rows = 0;
  int64_t pad_tokens = 0;
  bool operator==(const GroupChoice&) const = default;
};

GroupChoice form_prefill_group(std::span<const GroupCandidate> waiting, const GroupLimits& limits);

}  // namespace tessera::coordinator
