// bench/bench_cpu_linear.cpp — the CPU typed-weight products (kernels/cpu/quant.h) on SmolLM2-135M's shapes: fp32
// against int8 activations, on every instruction set this machine has, for decode-batch and prefill row counts.
//   bench_cpu_linear [type=q4_1] [reps=20]
// Prints, per (set, rows of x), the median time of the three products of one layer (q|k|v 960x576, gate|up
// 3072x576, down 576x1536) and the GMAC/s of each mode. The weights are random bytes with moderate scales (the
// speed of these kernels does not depend on the values). Modes alternate rep by rep, so that a noisy machine
// slows both alike.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/quant.h"

namespace ops = tessera::ops;

namespace {

struct Shape {
  int64_t n, k;
};
constexpr Shape kLayer[] = {{960, 576}, {3072, 576}, {576, 1536}};

std::vector<uint8_t> random_weights(ops::DType t, int64_t n, int64_t k, std::mt19937& rng) {
  std::vector<uint8_t> b(ops::dtype_nbytes(t, k) * static_cast<size_t>(n));
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  const int64_t bb = ops::block_bytes(t);
  const uint16_t half = 0x2000;  // 2^-7: a moderate fp16 scale
  for (size_t i = 0; i + static_cast<size_t>(bb) <= b.size(); i += static_cast<size_t>(bb)) {
    const size_t at = t == ops::DType::Q6_K ? 208 : 0;
    std::memcpy(&b[i + at], &half, 2);
    if (t == ops::DType::Q4_1 || t == ops::DType::Q4_K) std::memcpy(&b[i + 2], &half, 2);
  }
  return b;
}

ops::DType parse_type(const std::string& s) {
  for (ops::DType t : {ops::DType::Q8_0, ops::DType::Q4_0, ops::DType::Q4_1, ops::DType::Q4_K, ops::DType::Q6_K})
    if (s == ops::dtype_name(t)) return t;
  std::fprintf(stderr, "bench_cpu_linear: unknown type '%s' (q8_0, q4_0, q4_1, q4_k, q6_k)\n", s.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  const ops::DType type = parse_type(argc > 1 ? argv[1] : "q4_1");
  const int reps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 20;
  std::mt19937 rng(1);
  std::vector<std::vector<uint8_t>> w;
  double macs_per_row = 0;
  int64_t max_k = 0, max_n = 0;
  for (const Shape& s : kLayer) {
    w.push_back(random_weights(type, s.n, s.k, rng));
    macs_per_row += static_cast<double>(s.n * s.k);
    max_k = std::max(max_k, s.k);
    max_n = std::max(max_n, s.n);
  }
  std::printf("%s weights, %d threads, median of %d reps\n\n", ops::dtype_name(type), omp_get_max_threads(), reps);
  std::printf(
      "| set | rows | fp32 ms | int8 ms | fp32 GMAC/s | int8 GMAC/s | int8 / fp32 speed "
      "|\n|---|---|---|---|---|---|---|\n");
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (ops::Isa isa : ops::supported_isas()) {
    ops::set_isa(isa);
    for (int64_t m : {1, 4, 8, 16, 64, 512}) {
      std::vector<float> x(static_cast<size_t>(m * max_k)), y(static_cast<size_t>(m * max_n));
      for (auto& v : x) v = nd(rng);
      std::vector<double> t[2];
      for (int rep = 0; rep < reps + 1; ++rep) {
        for (int mode = 0; mode < 2; ++mode) {
          const auto act = mode == 0 ? ops::Activations::kF32 : ops::Activations::kInt8;
          const auto t0 = std::chrono::steady_clock::now();
          for (size_t i = 0; i < w.size(); ++i) {
            const ops::Tensor wt = ops::Tensor::dense(w[i].data(), type, kLayer[i].n, kLayer[i].k);
            ops::linear_typed(x.data(), m, wt, nullptr, y.data(), kLayer[i].n, act);
          }
          const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          if (rep > 0) t[mode].push_back(ms);  // rep 0 warms up
        }
      }
      double med[2];
      for (int mode = 0; mode < 2; ++mode) {
        std::sort(t[mode].begin(), t[mode].end());
        med[mode] = t[mode][t[mode].size() / 2];
      }
      const double gmac = macs_per_row * static_cast<double>(m) / 1e6;
      std::printf("| %s | %lld | %.3f | %.3f | %.1f | %.1f | %.2f |\n", ops::isa_name(isa), static_cast<long long>(m),
                  med[0], med[1], gmac / med[0], gmac / med[1], med[0] / med[1]);
      std::fflush(stdout);
    }
  }
  return 0;
}
