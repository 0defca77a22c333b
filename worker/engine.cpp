// worker/engine.cpp — plan execution; the runner samples each row from the slot state kept here.
#include "worker/engine.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <span>
#include <type_traits>

#include "common/check.h"

namespace tessera::worker {

Engine::Engine(ModelRunner& runner, int tp_rank) : runner_(runner), tp_rank_(tp_rank) {}

std::vector<SampleRequest> Engine::requests(const std::vector<int32_t>& slots) const {
  std::vector<SampleRequest> rows;
  rows.reserve(slots.size());
  for (int32_t s : slots) {
    const auto& st = slots_[static_cast<size_t>(s)];
    TESSERA_CHECK(st.has_value());
    rows.push_back({&st->params, st->step, &st->counts, &st->lists});
  }
  return rows;
}

void Engine::record(const std::vector<sampler::SampleResult>& results, const std::vector<int32_t>& slots,
                    parallel::StepResult& out) {
  TESSERA_CHECK_MSG(results.size() == slots.size(), "the runner sampled " + std::to_string(results.size()) +
                                                        " rows of " + std::to_string(slots.size()));
  for (size_t b = 0; b < slots.size(); ++b) {
    auto& st = slots_[static_cast<size_t>(slots[b])];
    const auto& r = results[b];
    ++st->step;
    ++st->counts[r.token];
    out.tokens.push_back(r.token);
    out.logprobs.push_back(r.logprob);
    std::vector<parallel::TopLogprob> top;
    for (const auto& [t, lp] : r.top_logprobs) top.push_back({t, lp});
    out.top_logprobs.push_back(std::move(top));
  }
}

parallel::StepResult Engine::execute(const parallel::StepPlan& plan) {
  const auto t0 = std::chrono::steady_clock::now();
  parallel::StepResult out;
  out.step_id = plan.step_id;
  switch (plan.kind) {
    case parallel::StepPlan::Kind::kShutdown:
      return out;
    case parallel::StepPlan::Kind::kConfigure: {
      if (plan.n_slots < 1 || plan.max_ctx < 1 || plan.block_size < 0)
        throw Error("configure: n_slots " + std::to_string(plan.n_slots) + " and max_ctx " +
                    std::to_string(plan.max_ctx) + " must be >= 1, block_size " + std::to_string(plan.block_size) +
                    " >= 0");
      // The runner may allocate fewer sequences (an accelerator's KV budget) and sizes the blocks itself.
      // block_size 0: one block of max_ctx tokens per sequence (the slot layout).
      const int32_t block_size = plan.block_size > 0 ? plan.block_size : plan.max_ctx;
      const KvGeometry g = runner_.configure({plan.n_slots, plan.max_ctx, block_size, plan.kv_bytes});
      out.n_slots = static_cast<int32_t>(g.n_seqs);
      out.n_blocks = static_cast<int32_t>(g.n_blocks);
      out.block_size = static_cast<int32_t>(g.block_size);
      slots_.assign(static_cast<size_t>(out.n_slots), std::nullopt);
      return out;
    }
    case parallel::StepPlan::Kind::kStep:
      break;
  }
  const KvGeometry geometry = runner_.kv_geometry();
  if (geometry.n_seqs == 0) throw Error("step " + std::to_string(plan.step_id) + " before the KV cache was configured");
  auto check_slot = [&](int32_t s) {
    if (s < 0 || s >= geometry.n_seqs) throw Error("plan names sequence slot " + std::to_string(s) + " out of range");
  };
  for (int32_t b : plan.tables)
    if (b < -1 || b >= geometry.n_blocks) throw Error("plan names KV block " + std::to_string(b) + " out of range");
  for (int32_t s : plan.release_slots) {
    check_slot(s);
    slots_[static_cast<size_t>(s)].reset();
  }
  // A plan without block tables (table_width 0): each row's one block is its slot (the slot layout).
  std::vector<int32_t> slot_tables;
  if (plan.table_width == 0 && plan.n_rows() > 0) {
    slot_tables = plan.prefill_slots;
    slot_tables.insert(slot_tables.end(), plan.decode_slots.begin(), plan.decode_slots.end());
  }
  const std::vector<int32_t>& all_tables = plan.table_width > 0 ? plan.tables : slot_tables;
  const int32_t width = plan.table_width > 0 ? plan.table_width : 1;
  for (int32_t b : slot_tables)
    if (b < 0 || b >= geometry.n_blocks) throw Error("plan names KV block " + std::to_string(b) + " out of range");
  const size_t W = static_cast<size_t>(width), B = plan.prefill_pad.size();
  if (B > 0) {
    PrefillGroup g;
    g.n_cols = plan.prefill_cols;
    g.tokens = plan.prefill_tokens;
    g.pad = plan.prefill_pad;
    g.cached = plan.prefill_cached;  // empty: nothing cached
    g.tables.width = width;
    g.tables.blocks.assign(all_tables.begin(), all_tables.begin() + static_cast<std::ptrdiff_t>(B * W));
    size_t h = 0, h_bias = 0, h_stop = 0, h_prompt = 0;
    // Row b's share of one of the plan's concatenated lists (lengths empty: every row's list is empty).
    auto take = [&](const auto& lens, const auto& all, size_t& at, size_t b, const char* what) {
      using T = typename std::decay_t<decltype(all)>::value_type;
      const auto n = static_cast<size_t>(b < lens.size() ? std::max(lens[b], 0) : 0);
      if (at + n > all.size()) throw Error(std::string("plan's prefill ") + what + " is shorter than its lengths");
      std::vector<T> v(all.begin() + static_cast<std::ptrdiff_t>(at),
                       all.begin() + static_cast<std::ptrdiff_t>(at + n));
      at += n;
      return v;
    };
    for (size_t b = 0; b < B; ++b) {
      const int32_t s = plan.prefill_slots[b];
      check_slot(s);
      SlotState st{plan.prefill_sampling[b], 0, {}, {}};
      // A resumed sequence: its sampler goes on from the tokens it generated before its preemption.
      const auto n_hist = static_cast<size_t>(
          b < plan.prefill_history_len.size() ? std::max(plan.prefill_history_len[b], 0) : 0);  // empty: all new
      if (h + n_hist > plan.prefill_history.size()) throw Error("plan's prefill history is shorter than its lengths");
      for (size_t i = 0; i < n_hist; ++i) ++st.counts[plan.prefill_history[h++]];
      st.step = n_hist;
      st.lists.logit_bias = take(plan.prefill_bias_len, plan.prefill_bias, h_bias, b, "logit_bias");
      st.lists.stop_ids = take(plan.prefill_stop_len, plan.prefill_stop, h_stop, b, "stop ids");
      st.lists.prompt_tokens = take(plan.prefill_prompt_len, plan.prefill_prompt, h_prompt, b, "prompt tokens");
      slots_[static_cast<size_t>(s)] = std::move(st);
    }
    const auto results = runner_.prefill_and_sample(g, requests(plan.prefill_slots));
    if (tp_rank_ == 0) record(results, plan.prefill_slots, out);
  }
  if (!plan.decode_tokens.empty()) {
    for (int32_t s : plan.decode_slots) {
      check_slot(s);
      if (!slots_[static_cast<size_t>(s)])
        throw Error("decode on sequence slot " + std::to_string(s) + " that holds no sequence");
    }
    BlockTables tables;
    tables.width = width;
    tables.blocks.assign(all_tables.begin() + static_cast<std::ptrdiff_t>(B * W), all_tables.end());
    const auto results =
        runner_.decode_and_sample(plan.decode_tokens, tables, plan.decode_positions, requests(plan.decode_slots));
    if (tp_rank_ == 0) record(results, plan.decode_slots, out);
  }
  out.step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace tessera::worker
