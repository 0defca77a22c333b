// tests/gpu/test_cuda_backend.cpp — `--backend cuda` as the app and the workers load it (worker/backend.h): the
// model on the GPU through load_model(), driven by the Engine exactly as the serving path drives it, against
// the same model on load_model()'s CPU backend; and the KV pool sized from backend.kv_memory_fraction.
// Label gpu; skips with "no CUDA device: ..." where there is no GPU (the CPU half of the backend choice is
// tested in tests/e2e/test_backend.cpp).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/gpu/gpu_test_util.h"
#include "worker/backend.h"
#include "worker/cuda/cuda_runner.h"
#include "worker/cuda/random_weights.h"
#include "worker/engine.h"
#include "worker/model/weights.h"

namespace tessera {
namespace {

using namespace gpu_test;

std::unique_ptr<worker::LoadedModel> load(const std::string& path, const std::string& kind, const std::string& dtype) {
  worker::LoadRequest r;
  r.path = path;
  r.options.kind = kind;
  r.options.dtype = dtype;
  return worker::load_model(r);
}

// Greedy generation through the Engine: configure, one prefill plan, then decode plans; the tokens it returns.
std::vector<int32_t> engine_greedy(worker::ModelRunner& runner, const std::vector<int32_t>& prompt, int n) {
  worker::Engine engine(runner, 0);
  parallel::StepPlan conf;
  conf.kind = parallel::StepPlan::Kind::kConfigure;
  conf.n_slots = 2;
  conf.max_ctx = static_cast<int32_t>(prompt.size()) + n + 1;
  EXPECT_EQ(engine.execute(conf).n_slots, 2);
  parallel::StepPlan p;
  p.prefill_cols = static_cast<int32_t>(prompt.size());
  p.prefill_tokens = prompt;
  p.prefill_pad = {0};
  p.prefill_slots = {1};
  p.prefill_sampling = {SamplingParams{.temperature = 0.0f}};  // temperature 0: greedy
  std::vector<int32_t> out{engine.execute(p).tokens.at(0)};
  auto pos = static_cast<int32_t>(prompt.size());
  while (static_cast<int>(out.size()) < n) {
    parallel::StepPlan d;
    d.step_id = out.size();
    d.decode_tokens = {out.back()};
    d.decode_slots = {1};
    d.decode_positions = {pos++};
    out.push_back(engine.execute(d).tokens.at(0));
  }
  return out;
}

TEST(CudaBackend, AutoPicksTheGpu) {
  TESSERA_REQUIRE_DEVICE();
  worker::BackendOptions o;
  EXPECT_EQ(worker::resolve_backend(o), "cuda");
  o.kind = "cuda";
  EXPECT_EQ(worker::resolve_backend(o), "cuda");
  EXPECT_GE(worker::cuda_device_count(), 1);
}

// fp32 storage on the GPU (the check mode): the engine's greedy tokens are the CPU backend's, on every oracle.
TEST(CudaBackend, Fp32EngineMatchesCpuBackend) {
  TESSERA_REQUIRE_DEVICE();
  if (oracle_dir().empty()) GTEST_SKIP() << "TESSERA_ORACLES is not set (make_oracles.py OUT)";
  for (const char* name : {"gpt2", "llama_gqa_tied", "llama_gqa_untied", "llama_mha"}) {
    SCOPED_TRACE(name);
    const std::string dir = oracle_dir() + "/" + name;
    const auto cases = read_reference(dir);
    ASSERT_FALSE(cases.empty());
    auto gpu = load(dir, "cuda", "fp32");
    auto cpu = load(dir, "cpu", "fp32");
    EXPECT_EQ(gpu->backend(), "cuda");
    EXPECT_EQ(cpu->backend(), "cpu");
    EXPECT_NE(gpu->describe().find("fp32"), std::string::npos) << gpu->describe();
    for (size_t ci = 0; ci < cases.size(); ++ci)
      EXPECT_EQ(engine_greedy(gpu->runner(), cases[ci].prompt_ids, 16),
                engine_greedy(cpu->runner(), cases[ci].prompt_ids, 16))
          << "case " << ci;
  }
}

// The KV pool takes at most backend.kv_memory_fraction of the free memory: a request for more slots than fit
// gets fewer (the engine reports how many), and a slot that cannot fit at all is a clear error.
TEST(CudaBackend, KvPoolSizedFromMemoryFraction) {
  TESSERA_REQUIRE_DEVICE();
  worker::CudaRunner runner(model::make_random_weights(model::synthetic_config("llama-2048"), 1), gpu::DType::BF16);
  runner.set_kv_memory_fraction(0.05);
  const int64_t max_ctx = 4096;
  const size_t per_slot =
      worker::kv_bytes_per_slot(runner.config(), runner.config().n_kv_heads, max_ctx, gpu::DType::BF16);
  size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  const int64_t expect = worker::kv_slots_fitting(free_b, 0.05, per_slot);
  ASSERT_GT(expect, 0);
  worker::Engine engine(runner, 0);
  parallel::StepPlan conf;
  conf.kind = parallel::StepPlan::Kind::kConfigure;
  conf.n_slots = 1 << 30;
  conf.max_ctx = static_cast<int32_t>(max_ctx);
  const int32_t granted = engine.execute(conf).n_slots;
  EXPECT_GT(granted, 0);
  EXPECT_LE(granted, expect + 1);  // free memory moves a little between the two readings
  EXPECT_GE(granted, expect - 1);
  EXPECT_LE(static_cast<double>(runner.kv_bytes()), 0.05 * static_cast<double>(free_b) + per_slot);
  EXPECT_EQ(runner.kv_geometry().n_seqs, granted);
  // Asking for fewer than fit gets exactly that many.
  conf.n_slots = 2;
  EXPECT_EQ(engine.execute(conf).n_slots, 2);
  // One slot bigger than the budget: an error naming the key to change.
  runner.set_kv_memory_fraction(1e-6);
  try {
    engine.execute(conf);
    FAIL() << "a KV slot over the budget was allocated";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backend.kv_memory_fraction"), std::string::npos) << e.what();
  }
  EXPECT_THROW(runner.set_kv_memory_fraction(0.0), Error);
  EXPECT_THROW(runner.set_kv_memory_fraction(1.5), Error);
}

// Decode steps replayed as CUDA graphs give the eager steps' logits bit for bit (the same kernels on the same
// inputs), across batch sizes, slots and positions that change every step, and after configure() re-makes the
// KV pool (the graphs are captured again). The graphs must actually have been replayed.
TEST(CudaBackend, DecodeGraphsReplayTheEagerStep) {
  TESSERA_REQUIRE_DEVICE();
  const auto cfg = model::synthetic_config("llama-2048");
  worker::CudaRunner eager(model::make_random_weights(cfg, 7), gpu::DType::BF16);
  worker::CudaRunner graphed(model::make_random_weights(cfg, 7), gpu::DType::BF16);
  graphed.set_cuda_graphs(true);
  const int64_t V = cfg.vocab;
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int64_t n_slots = 4 + round;  // round 1: a new KV pool
    eager.configure_slots(n_slots, 256);
    graphed.configure_slots(n_slots, 256);
    const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5}, {6, 7}, {8, 9, 10}, {11}};
    const std::vector<int32_t> slots = {0, 1, 2, 3};
    const auto group = worker::PrefillGroup::make(prompts, slots);
    ASSERT_EQ(max_abs_diff(eager.prefill(group).data(), graphed.prefill(group).data(), 4 * V), 0.0);
    std::vector<int32_t> pos = {5, 2, 3, 1};
    for (int step = 0; step < 12; ++step) {
      // Batch sizes 4, 4, 4, 2, 2, 2, 4, ...: each size is eager once, captured once, then replayed.
      const bool half = (step / 3) % 2 == 1;
      std::vector<int32_t> t, sl, p;
      for (int32_t b = 0; b < 4; ++b) {
        if (half && b % 2 == 0) continue;
        t.push_back(100 + step * 4 + b);
        sl.push_back(b);
        p.push_back(pos[static_cast<size_t>(b)]++);
      }
      const auto le = eager.decode_slots(t, sl, p), lg = graphed.decode_slots(t, sl, p);
      ASSERT_EQ(le.size(), lg.size());
      EXPECT_EQ(max_abs_diff(le.data(), lg.data(), static_cast<int64_t>(le.size())), 0.0) << "step " << step;
    }
  }
  EXPECT_GE(graphed.cuda_graph_replays(), 8u);
  EXPECT_EQ(eager.cuda_graph_replays(), 0u);
}

// SmolLM2-135M-Instruct (the default model) on the GPU, against the CPU backend on the same machine and
// transformers' greedy tokens. TESSERA_SMOLLM2: the GGUF (scripts/gpu-carry ships it in two halves that
// scripts/gpu-check joins); TESSERA_SMOLLM2_REF: the folder of tests/python/smollm2_reference.py's
// reference.json (prompt ids and transformers' greedy ids; its logits files are not needed here).
// fp32 storage: 32 greedy tokens equal to the CPU's and transformers'. bf16: teacher-forced along transformers'
// greedy path, top-1 agreement with the CPU engine >= 99% and logits within 5% of the step's largest |logit|.
TEST(CudaBackend, SmolLM2MatchesCpu) {
  TESSERA_REQUIRE_DEVICE();
  const char* model = std::getenv("TESSERA_SMOLLM2");
  const char* ref = std::getenv("TESSERA_SMOLLM2_REF");
  if (model == nullptr || ref == nullptr)
    GTEST_SKIP() << "TESSERA_SMOLLM2 / TESSERA_SMOLLM2_REF are not set (scripts/gpu-carry, scripts/gpu-check)";
  std::ifstream in(std::string(ref) + "/reference.json");
  ASSERT_TRUE(in) << ref << "/reference.json";
  const auto j = nlohmann::json::parse(in);
  auto cpu = load(model, "cpu", "fp32");
  auto f32 = load(model, "cuda", "fp32");
  auto bf16 = load(model, "cuda", "bf16");
  const int64_t V = cpu->runner().config().vocab;
  int64_t agree = 0, steps = 0;
  double worst_rel = 0.0;
  for (const auto& c : j.at("cases")) {
    const auto prompt = c.at("prompt_ids").get<std::vector<int32_t>>();
    const auto hf = c.at("greedy_ids").get<std::vector<int32_t>>();
    ASSERT_GE(hf.size(), 32u);
    SCOPED_TRACE(c.at("prompt_text").get<std::string>());
    const int64_t ctx = static_cast<int64_t>(prompt.size() + hf.size()) + 1;
    for (auto* m : {cpu.get(), f32.get(), bf16.get()}) m->runner().configure_slots(1, ctx);
    const auto g_f32 = greedy(f32->runner(), prompt, 32);
    EXPECT_EQ(g_f32, greedy(cpu->runner(), prompt, 32));
    EXPECT_EQ(g_f32, std::vector<int32_t>(hf.begin(), hf.begin() + 32));
    const auto n_steps = static_cast<int64_t>(hf.size());
    const auto lb = teacher_forced(bf16->runner(), prompt, hf, n_steps);
    const auto lc = teacher_forced(cpu->runner(), prompt, hf, n_steps);
    for (int64_t t = 0; t < n_steps; ++t) {
      agree += argmax(lb[t].data(), V) == argmax(lc[t].data(), V);
      ++steps;
      worst_rel = std::max(worst_rel, max_abs_diff(lb[t].data(), lc[t].data(), V) / max_abs(lc[t].data(), V));
    }
  }
  std::printf("[smollm2] bf16 vs cpu fp32: top-1 %lld/%lld, max|gpu-cpu| %.3g of max|logit|\n",
              static_cast<long long>(agree), static_cast<long long>(steps), worst_rel);
  EXPECT_GE(static_cast<double>(agree), 0.99 * static_cast<double>(steps));
  EXPECT_LE(worst_rel, 0.05);
}

}  // namespace
}  // namespace tessera
