// tests/e2e/e2e_util.cpp — see e2e_util.h.
#include "tests/e2e/e2e_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "worker/engine.h"

namespace tessera::e2e {

std::string env_dir(const char* var) {
  if (const char* v = std::getenv(var)) return v;
  const std::string name(var);
#ifdef TESSERA_ORACLES
  if (name == "TESSERA_ORACLES") return TESSERA_ORACLES;
#endif
#ifdef TESSERA_SMOLLM2_REF
  if (name == "TESSERA_SMOLLM2_REF") return TESSERA_SMOLLM2_REF;
#endif
#ifdef TESSERA_DEFAULT_MODEL
  if (name == "TESSERA_DEFAULT_MODEL") return TESSERA_DEFAULT_MODEL;
#endif
  return {};
}

std::vector<coordinator::GenerateResult> generate(worker::Transformer& model,
                                                  const std::vector<coordinator::GenerateRequest>& requests,
                                                  const coordinator::BatchOptions& options) {
  worker::CpuRunner runner(model);
  worker::LocalDispatcher dispatcher(runner);
  return coordinator::generate(dispatcher, {model.config().vocab, model.config().max_ctx}, requests, {}, nullptr,
                               options);
}

LogitStats compare_logits(worker::Transformer& model, const RefCase& c) {
  LogitStats s;
  const int64_t V = c.vocab;
  EXPECT_EQ(V, model.config().vocab);
  auto cache = model.make_cache(1, static_cast<int64_t>(c.prompt_ids.size() + c.greedy_ids.size()) + 1);
  auto check = [&](const std::vector<float>& got, int64_t step) {
    const float* ref = c.logits.data() + step * V;
    for (int64_t i = 0; i < V; ++i) s.max_abs_diff = std::max(s.max_abs_diff, double(std::abs(got[i] - ref[i])));
    const auto top_got = std::max_element(got.begin(), got.begin() + V) - got.begin();
    const auto top_ref = std::max_element(ref, ref + V) - ref;
    if (top_got != top_ref) ++s.top1_mismatches;
  };
  auto logits = model.prefill(worker::PrefillGroup::make({c.prompt_ids}, {0}), cache);
  check(logits, 0);
  int32_t pos = static_cast<int32_t>(c.prompt_ids.size());
  for (int64_t t = 0; t + 1 < c.n_steps && t < static_cast<int64_t>(c.greedy_ids.size()); ++t) {
    logits = model.decode_slots({c.greedy_ids[static_cast<size_t>(t)]}, {0}, {pos++}, cache);
    check(logits, t + 1);
  }
  return s;
}

}  // namespace tessera::e2e
