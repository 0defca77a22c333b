// tests/gpu/bench_cuda_generate.cpp — end-to-end generation time of the GPU engine: EET's setup (a
// GPT-2-medium-shaped model, batch 4, prompt 512, 512 new tokens), greedy: host argmax over the copied logits
// every step, or (--device-sampling) the GPU sampler with only the tokens coming back, as the engine runs it.
//
// Usage: bench_cuda_generate [--model HF_DIR | --synthetic NAME] [--dtype f16|bf16|f32] [--batch 4]
//                            [--prompt 512] [--new 512] [--cpu] [--device-sampling] [--graphs]
// Prompt ids: (b · 1000003 + i · 7919 + 17) mod vocab — tests/gpu/bench_hf_generate.py uses the same, so that
// both sides run the same tokens on the same weights (--model: the checkpoint that script saved).
// Prints one line: prefill ms, ms per decode step, tokens/s. --cpu runs the CPU engine instead (reference).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "worker/cuda/cuda_runner.h"
#include "worker/cuda/random_weights.h"
#include "worker/model/weights.h"

using namespace tessera;

int main(int argc, char** argv) {
  std::string model_dir, synthetic = "gpt2-medium", dtype_s = "f16";
  int64_t B = 4, P = 512, N = 512;
  bool on_cpu = false, device_sampling = false, graphs = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model")
      model_dir = next();
    else if (a == "--synthetic")
      synthetic = next();
    else if (a == "--dtype")
      dtype_s = next();
    else if (a == "--batch")
      B = std::stoll(next());
    else if (a == "--prompt")
      P = std::stoll(next());
    else if (a == "--new")
      N = std::stoll(next());
    else if (a == "--cpu")
      on_cpu = true;
    else if (a == "--device-sampling")
      device_sampling = true;
    else if (a == "--graphs")
      graphs = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const gpu::DType dtype = dtype_s == "f32" ? gpu::DType::F32 : dtype_s == "bf16" ? gpu::DType::BF16 : gpu::DType::F16;
  try {
    model::ModelWeights w = model_dir.empty() ? model::make_random_weights(model::synthetic_config(synthetic), 7)
                                              : model::load_weights(model_dir);
    const int64_t V = w.config.vocab;
    std::unique_ptr<worker::Transformer> cpu_model;
    std::unique_ptr<worker::ModelRunner> runner;
    if (on_cpu) {
      cpu_model = std::make_unique<worker::Transformer>(std::move(w));
      runner = std::make_unique<worker::CpuRunner>(*cpu_model);
    } else {
      auto cuda = std::make_unique<worker::CudaRunner>(std::move(w), dtype);
      cuda->set_cuda_graphs(graphs);
      runner = std::move(cuda);
    }
    // Greedy rows for the engine's sampling path (--device-sampling; on the CPU it samples on the host).
    SamplingParams greedy;
    greedy.temperature = 0.0f;
    const std::unordered_map<int32_t, int32_t> no_counts;
    const std::vector<worker::SampleRequest> rows(static_cast<size_t>(B),
                                                  worker::SampleRequest{&greedy, 0, &no_counts, nullptr});
    runner->configure_slots(B, P + N);
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
    std::vector<int32_t> slots;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < P; ++i) prompts[b].push_back(static_cast<int32_t>((b * 1000003 + i * 7919 + 17) % V));
      slots.push_back(static_cast<int32_t>(b));
    }
    auto run = [&](int64_t n_new, double* prefill_s, double* decode_s) {
      const auto t0 = std::chrono::steady_clock::now();
      auto logits = runner->prefill(worker::PrefillGroup::make(prompts, slots));
      const auto t1 = std::chrono::steady_clock::now();
      std::vector<int32_t> last(static_cast<size_t>(B)), pos(static_cast<size_t>(B), static_cast<int32_t>(P));
      auto argmax_rows = [&] {  // host greedy over the copied logits
        for (int64_t b = 0; b < B; ++b)
          last[b] = static_cast<int32_t>(std::max_element(logits.begin() + b * V, logits.begin() + (b + 1) * V) -
                                         (logits.begin() + b * V));
      };
      argmax_rows();
      for (int64_t step = 1; step < n_new; ++step) {
        if (device_sampling) {
          const auto picked = runner->decode_and_sample(last, tessera::worker::BlockTables::slots(slots), pos, rows);
          for (int64_t b = 0; b < B; ++b) last[b] = picked[static_cast<size_t>(b)].token;
        } else {
          logits = runner->decode_slots(last, slots, pos);
          argmax_rows();
        }
        for (auto& p : pos) ++p;
      }
      const auto t2 = std::chrono::steady_clock::now();
      *prefill_s = std::chrono::duration<double>(t1 - t0).count();
      *decode_s = std::chrono::duration<double>(t2 - t1).count();
    };
    double p_s = 0, d_s = 0;
    run(std::min<int64_t>(N, 8), &p_s, &d_s);  // warm-up: cuBLAS heuristics, module load
    run(N, &p_s, &d_s);
    const double total_ms = 1e3 * (p_s + d_s);
    std::printf(
        "bench_cuda_generate %s %s%s%s B=%lld prompt=%lld new=%lld: prefill %.2f ms, decode %.3f ms/step, "
        "total %.1f ms = %.3f ms/token (per generated step), %.0f tokens/s\n",
        model_dir.empty() ? synthetic.c_str() : model_dir.c_str(), on_cpu ? "cpu-f32" : gpu::dtype_name(dtype),
        device_sampling ? " device-sampling" : "", graphs ? " graphs" : "", static_cast<long long>(B),
        static_cast<long long>(P), static_cast<long long>(N), 1e3 * p_s, 1e3 * d_s / static_cast<double>(N - 1),
        total_ms, total_ms / static_cast<double>(N), static_cast<double>(B * N) / (p_s + d_s));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_generate: %s\n", e.what());
    return 1;
  }
  return 0;
}
