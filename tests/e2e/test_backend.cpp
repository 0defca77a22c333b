// tests/e2e/test_backend.cpp — the backend choice (worker/backend.h) on any machine: option validation, what
// auto / cpu / cuda resolve to here, and a model loaded through load_model() onto the CPU backend, driven by
// the Engine the way `tessera generate` and the workers drive it, giving what the Transformer gives directly.
// (The GPU side — cuda, the KV memory fraction — is tests/gpu/test_cuda_backend.cpp, label gpu.)
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "common/check.h"
#include "tests/e2e/e2e_util.h"
#include "worker/backend.h"
#include "worker/engine.h"
#include "worker/model/weights.h"

namespace tessera {
namespace {

std::string error_of(const worker::BackendOptions& o) {
  try {
    o.validate();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Backend, BadOptionsNameTheKey) {
  worker::BackendOptions o;
  EXPECT_EQ(error_of(o), "");
  o.kind = "gpu";
  EXPECT_EQ(error_of(o), "backend.kind must be auto, cpu or cuda, got 'gpu'");
  o.kind = "cpu";
  o.dtype = "int8";
  EXPECT_EQ(error_of(o), "backend.dtype must be bf16, fp16 or fp32, got 'int8'");
  o.dtype = "fp16";
  for (double f : {0.0, -0.5, 1.5}) {
    o.kv_memory_fraction = f;
    EXPECT_NE(error_of(o).find("backend.kv_memory_fraction must be in (0, 1]"), std::string::npos) << f;
  }
}

TEST(Backend, ResolvesToWhatThisMachineHas) {
  worker::BackendOptions o;
  o.kind = "cpu";
  EXPECT_EQ(worker::resolve_backend(o), "cpu");
  std::string why;
  const int devices = worker::cuda_device_count(&why);
  o.kind = "auto";
  EXPECT_EQ(worker::resolve_backend(o), devices > 0 ? "cuda" : "cpu");
  o.kind = "cuda";
  if (devices > 0) {
    EXPECT_EQ(worker::resolve_backend(o), "cuda");
  } else {
    EXPECT_FALSE(why.empty());
    try {
      worker::resolve_backend(o);
      FAIL() << "backend.kind cuda resolved without a device";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "backend.kind cuda: " + why);
    }
    if (!worker::cuda_compiled()) {
      EXPECT_NE(why.find("built without the CUDA backend"), std::string::npos) << why;
    }
  }
}

TEST(Backend, CpuModelThroughTheEngineIsTheTransformer) {
  const std::string root = e2e::env_dir("TESSERA_ORACLES");
  if (root.empty()) GTEST_SKIP() << "TESSERA_ORACLES is not set (configure with -DTESSERA_PYTHON=<venv python>)";
  const std::string dir = root + "/llama_gqa_tied";
  worker::LoadRequest r;
  r.path = dir;
  r.options.kind = "cpu";
  auto loaded = worker::load_model(r);
  EXPECT_EQ(loaded->backend(), "cpu");
  EXPECT_NE(loaded->describe().find("cpu backend ("), std::string::npos) << loaded->describe();
  EXPECT_EQ(loaded->collectives(), nullptr);

  worker::Transformer direct(model::load_weights(dir));
  EXPECT_EQ(loaded->weight_bytes(), static_cast<double>(direct.weights().n_bytes()));
  const auto cases = e2e::read_reference(dir).cases;
  ASSERT_FALSE(cases.empty());
  const auto& prompt = cases[0].prompt_ids;

  worker::Engine engine(loaded->runner(), 0);
  parallel::StepPlan conf;
  conf.kind = parallel::StepPlan::Kind::kConfigure;
  conf.n_slots = 3;
  conf.max_ctx = 64;
  conf.block_size = 16;
  const parallel::StepResult granted = engine.execute(conf);
  EXPECT_EQ(granted.n_slots, 3);  // the CPU backend allocates what is asked: 3 contexts of 64 in blocks of 16
  EXPECT_EQ(granted.n_blocks, 12);
  EXPECT_EQ(granted.block_size, 16);
  parallel::StepPlan p;
  p.prefill_cols = static_cast<int32_t>(prompt.size());
  p.prefill_tokens = prompt;
  p.prefill_pad = {0};
  p.prefill_slots = {2};
  p.prefill_sampling = {SamplingParams{.temperature = 0.0f}};
  p.table_width = 4;
  p.tables = {11, 3, 7, -1};  // any blocks, in any order
  const int32_t first = engine.execute(p).tokens.at(0);

  auto cache = direct.make_cache(1, 64);
  const auto logits = direct.prefill(worker::PrefillGroup::make({prompt}, {0}), cache);
  const auto V = static_cast<size_t>(direct.config().vocab);
  ASSERT_EQ(logits.size(), V);
  EXPECT_EQ(first, static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
  EXPECT_EQ(first, cases[0].greedy_ids.at(0));  // and transformers' first greedy token

  conf.n_slots = 0;
  EXPECT_THROW(engine.execute(conf), Error);  // a configure without slots is refused, not allocated
}

}  // namespace
}  // namespace tessera
