// worker/engine.cpp — plan execution; the runner samples each row from the slot state kept here.
#include "worker/engine.h"

#include <chrono>
#include <span>

#include "common/check.h"

namespace tessera::worker {

Engine::Engine(ModelRunner& runner, int tp_rank) : runner_(runner), tp_rank_(tp_rank) {}

std::vector<SampleRequest> Engine::requests(const std::vector<int32_t>& slots) const {
  std::vector<SampleRequest> rows;
  rows.reserve(slots.size());
  for (int32_t s : slots) {
    const auto& st = slots_[static_cast<size_t>(s)];
    TESSERA_CHECK(st.has_value());
    rows.push_back({&st->params, st->step, &st->counts});
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
    case parallel::StepPlan::Kind::kConfigure:
      if (plan.n_slots < 1 || plan.max_ctx < 1)
        throw Error("configure: n_slots " + std::to_string(plan.n_slots) + " and max_ctx " +
                    std::to_string(plan.max_ctx) + " must be >= 1");
      runner_.configure(plan.n_slots, plan.max_ctx);  // may allocate fewer slots (an accelerator's KV budget)
      out.n_slots = static_cast<int32_t>(runner_.n_slots());
      slots_.assign(static_cast<size_t>(out.n_slots), std::nullopt);
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
      slots_[static_cast<size_t>(g.slots[b])] = SlotState{plan.prefill_sampling[b], 0, {}};
    }
    const auto results = runner_.prefill_and_sample(g, requests(g.slots));
    if (tp_rank_ == 0) record(results, g.slots, out);
  }
  if (!plan.decode_tokens.empty()) {
    for (int32_t s : plan.decode_slots) {
      check_slot(s);
      if (!slots_[static_cast<size_t>(s)])
        throw Error("decode on KV slot " + std::to_string(s) + " that holds no sequence");
    }
    const auto results = runner_.decode_and_sample(plan.decode_tokens, plan.decode_slots, plan.decode_positions,
                                                   requests(plan.decode_slots));
    if (tp_rank_ == 0) record(results, plan.decode_slots, out);
  }
  out.step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace tessera::worker
