// coordinator/scheduler/prefill_group_former.cpp — see prefill_group_former.h.
#include "coordinator/scheduler/prefill_group_former.h"

#include <algorithm>

namespace tessera::coordinator {

GroupChoice form_prefill_group(std::span<const GroupCandidate> waiting, const GroupLimits& limits) {
  GroupChoice g;
  auto no_blocks = [&](const GroupCandidate& c, int64_t taken) {
    return limits.free_blocks >= 0 && taken + c.blocks > limits.free_blocks;
  };
  if (waiting.empty() || waiting[0].n_seqs > limits.free_slots || no_blocks(waiting[0], 0)) return g;
  g.picked.push_back(0);
  g.cols = waiting[0].prompt_len;
  g.rows = waiting[0].n_seqs;
  int64_t blocks = waiting[0].blocks;
  int64_t real = static_cast<int64_t>(g.rows) * g.cols;  // non-pad tokens in the group
  for (size_t i = 1; i < waiting.size() && g.rows < limits.free_slots; ++i) {
    const GroupCandidate& c = waiting[i];
    const int32_t rows = g.rows + c.n_seqs;
    if (rows > limits.free_slots || no_blocks(c, blocks)) continue;
    const int32_t cols = std::max(g.cols, c.prompt_len);
    const int64_t cells = static_cast<int64_t>(rows) * cols;
    if (cells > limits.token_budget) continue;
    const int64_t with = real + static_cast<int64_t>(c.n_seqs) * c.prompt_len;
    const int64_t pad = cells - with;
    if (static_cast<double>(pad) > limits.max_pad_fraction * static_cast<double>(cells)) continue;
    g.picked.push_back(i);
    g.rows = rows;
    g.cols = cols;
    blocks += c.blocks;
    real = with;
  }
  g.pad_tokens = static_cast<int64_t>(g.rows) * g.cols - real;
  return g;
}

}  // namespace tessera::coordinator
