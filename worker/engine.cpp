// worker/engine.cpp — plan execution and per-slot sampling.
#include "worker/engine.h"

#include <chrono>
#include <span>

#include "common/check.h"

namespace tessera::worker {

Engine::Engine(ModelRunner& runner, int tp_rank) : runner_(runner), tp_rank_(tp_rank) {}

void Engine::sample_rows(const std::vector<float>& logits, const std::vector<int32_t>& slots,
                         parallel::StepResult& out) {
  const int64_t V = runner_.config().vocab;
  for (size_t b = 0; b < slots.size(); ++b) {
    auto& st = slots_[static_cast<size_t>(slots[b])];
    TESSERA_CHECK(st.has_value());
    const auto r = sampler::sample(std::span<const float>(logits).subspan(b * V, V), st->params, st->step, st->counts);
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
    case parallel::StepPlan::Kind::kConfigure:
      runner_.configure(plan.n_slots, plan.max_ctx);
      slots_.assign(static_cast<size_t>(plan.n_slots), std::nullopt);
      return out;
    case parallel::StepPlan::Kind::kStep:
      break;
  }
  if (runner_.n_slots() == 0)
    throw Error("step " + std::to_string(plan.step_id) + " before the KV cache was configured");
  auto check_slot = [&](int32_t s) {
    if (s < 0 || s >= runner_.n_slots()) throw Error("plan names KV slot " + std::to_string(s) + " out of range");
  };
  for (int32_t s : plan.release_slots) {
    check_slot(s);
    slots_[static_cast<size_t>(s)].reset();
  }
  if (!plan.prefill_pad.empty()) {
    PrefillGroup g;
    g.n_cols = plan.prefill_cols;
    g.tokens = plan.prefill_tokens;
    g.pad = plan.prefill_pad;
    g.slots = plan.prefill_slots;
    for (size_t b = 0; b < g.slots.size(); ++b) {
      check_slot(g.slots[b]);
      slots_[static_cast<size_t>(g.slots[b])] = SlotState{to_sampling_params(plan.prefill_sampling[b]), 0, {}};
    }
    const auto logits = runner_.prefill(g);
    if (tp_rank_ == 0) sample_rows(logits, g.slots, out);
  }
  if (!plan.decode_tokens.empty()) {
    for (int32_t s : plan.decode_slots) {
      check_slot(s);
      if (!slots_[static_cast<size_t>(s)])
        throw Error("decode on KV slot " + std::to_string(s) + " that holds no sequence");
    }
    const auto logits = runner_.decode(plan.decode_tokens, plan.decode_slots, plan.decode_positions);
    if (tp_rank_ == 0) sample_rows(logits, plan.decode_slots, out);
  }
  out.step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace tessera::worker
