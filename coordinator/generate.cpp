// coordinator/generate.cpp — plans for one prefill group and the decode steps after it.
#include "coordinator/generate.h"

#include <algorithm>

#include "common/check.h"

namespace tessera::coordinator {
namespace {

void validate(const ModelLimits& m, const GenerateRequest& r, size_t index) {
  const std::string who = "request " + std::to_string(index) + ": ";
  if (r.prompt.empty()) throw Error(who + "prompt is empty");
  for (int32_t id : r.prompt)
    if (id < 0 || id >= m.vocab)
      throw Error(who + "prompt token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                  std::to_string(m.vocab) + ")");
  if (r.max_tokens < 1) throw Error(who + "max_tokens must be >= 1, got " + std::to_string(r.max_tokens));
  const int64_t need = static_cast<int64_t>(r.prompt.size()) + r.max_tokens;
  if (need > m.max_ctx)
    throw Error(who + "prompt (" + std::to_string(r.prompt.size()) + " tokens) + max_tokens (" +
                std::to_string(r.max_tokens) + ") exceeds the model's context length " + std::to_string(m.max_ctx));
  try {
    r.sampling.validate();
  } catch (const Error& e) {
    throw Error(who + e.what());
  }
}

}  // namespace

std::vector<GenerateResult> generate(parallel::Dispatcher& dispatcher, const ModelLimits& limits,
                                     const std::vector<GenerateRequest>& requests, const TokenCallback& on_token,
                                     GenerateStats* stats) {
  if (requests.empty()) return {};
  int64_t max_ctx = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    validate(limits, requests[i], i);
    max_ctx = std::max<int64_t>(max_ctx, static_cast<int64_t>(requests[i].prompt.size()) + requests[i].max_tokens);
  }
  uint64_t step_id = 0;
  auto run = [&](parallel::StepPlan& plan) {
    plan.step_id = step_id++;
    parallel::StepResult r = dispatcher.run(plan);
    if (stats != nullptr && plan.kind == parallel::StepPlan::Kind::kStep) {
      ++stats->steps;
      stats->step_seconds += r.step_seconds;
      stats->collective_seconds += r.collective_seconds;
    }
    if (!r.error.empty()) throw Error("step " + std::to_string(plan.step_id) + " failed: " + r.error);
    if (plan.kind == parallel::StepPlan::Kind::kStep && static_cast<int64_t>(r.tokens.size()) != plan.n_rows())
      throw Error("step " + std::to_string(plan.step_id) + ": the workers returned " + std::to_string(r.tokens.size()) +
                  " tokens for " + std::to_string(plan.n_rows()) + " rows");
    return r;
  };

  parallel::StepPlan configure;
  configure.kind = parallel::StepPlan::Kind::kConfigure;
  configure.n_slots = static_cast<int32_t>(requests.size());
  configure.max_ctx = static_cast<int32_t>(max_ctx);
  const int32_t granted = run(configure).n_slots;
  if (granted != configure.n_slots)
    throw Error("the KV cache holds " + std::to_string(granted) + " of the " + std::to_string(configure.n_slots) +
                " sequences asked (" + std::to_string(max_ctx) +
                " tokens each): generate fewer at once or give the cache more memory (backend.kv_memory_fraction)");

  struct Seq {
    size_t index;
    int32_t slot;
    int32_t length;  // tokens in the KV cache
  };
  std::vector<GenerateResult> results(requests.size());
  std::vector<Seq> running;
  parallel::StepPlan plan;
  for (size_t i = 0; i < requests.size(); ++i) {
    running.push_back({i, static_cast<int32_t>(i), static_cast<int32_t>(requests[i].prompt.size())});
    plan.prefill_cols = std::max<int32_t>(plan.prefill_cols, static_cast<int32_t>(requests[i].prompt.size()));
  }
  plan.prefill_tokens.assign(requests.size() * static_cast<size_t>(plan.prefill_cols), 0);
  for (const Seq& s : running) {
    const auto& p = requests[s.index].prompt;
    const int32_t pad = plan.prefill_cols - static_cast<int32_t>(p.size());
    std::copy(p.begin(), p.end(),
              plan.prefill_tokens.begin() + static_cast<int64_t>(s.index) * plan.prefill_cols + pad);
    plan.prefill_pad.push_back(pad);
    plan.prefill_slots.push_back(s.slot);
    plan.prefill_sampling.push_back(requests[s.index].sampling);
  }

  while (!running.empty()) {
    const parallel::StepResult r = run(plan);
    plan = parallel::StepPlan{};
    std::vector<Seq> next;
    for (size_t b = 0; b < running.size(); ++b) {
      Seq& s = running[b];
      const GenerateRequest& req = requests[s.index];
      GenerateResult& out = results[s.index];
      const int32_t token = r.tokens[b];
      out.tokens.push_back(token);
      out.logprobs.push_back(r.logprobs[b]);
      if (on_token) on_token(s.index, token);
      if (std::find(req.stop_ids.begin(), req.stop_ids.end(), token) != req.stop_ids.end()) {
        out.finish_reason = "stop";
      } else if (static_cast<int32_t>(out.tokens.size()) >= req.max_tokens) {
        out.finish_reason = "length";
      }
      if (!out.finish_reason.empty()) {
        plan.release_slots.push_back(s.slot);
        continue;
      }
      plan.decode_tokens.push_back(token);
      plan.decode_slots.push_back(s.slot);
      plan.decode_positions.push_back(s.length++);
      next.push_back(s);
    }
    running = std::move(next);
  }
  if (!plan.release_slots.empty()) run(plan);  // a step that only frees the last slots
  return results;
}

}  // namespace tessera::coordinator
