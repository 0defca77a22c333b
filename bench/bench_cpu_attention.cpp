// bench/bench_cpu_attention.cpp — the CPU attention tile (kernels/cpu/attention_kernels.h) on SmolLM2-135M's heads
// (9 query heads, 3 KV heads, head_dim 64) through the paged cache (blocks of 16), on every instruction set this
// machine has: a causal prefill of L tokens (one row) and a decode step of 16 sequences over L cached tokens.
//   bench_cpu_attention [reps=5] [L...=512 2000]
// Prints the median time and GFLOP/s (prefill: 4 · L²/2 · head_dim · heads; decode: 4 · L · head_dim · heads · 16).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/ops.h"

namespace ops = tessera::ops;

namespace {

constexpr int64_t kHeads = 9, kKvHeads = 3, kDim = 64, kBlock = 16, kDecodeRows = 16;

template <typename F>
double median_ms(int reps, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  std::vector<int64_t> lengths;
  for (int i = 2; i < argc; ++i) lengths.push_back(std::atoll(argv[i]));
  if (lengths.empty()) lengths = {512, 2000};
  std::printf("threads %d; heads %lld / %lld, head_dim %lld, blocks of %lld\n\n", omp_get_max_threads(),
              static_cast<long long>(kHeads), static_cast<long long>(kKvHeads), static_cast<long long>(kDim),
              static_cast<long long>(kBlock));
  std::printf(
      "| set | L | prefill ms | prefill GFLOP/s | decode x%lld ms | decode GFLOP/s |\n|---|---|---|---|---|---|\n",
      static_cast<long long>(kDecodeRows));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (ops::Isa isa : ops::supported_isas()) {
    ops::set_isa(isa);
    for (int64_t L : lengths) {
      const int64_t width = (L + kBlock - 1) / kBlock, rows = kDecodeRows;
      const int64_t n_blocks = width * rows;
      std::vector<float> ck(static_cast<size_t>(n_blocks * kKvHeads * kBlock * kDim)), cv(ck.size());
      for (auto& x : ck) x = nd(rng);
      for (auto& x : cv) x = nd(rng);
      std::vector<int32_t> tables(static_cast<size_t>(rows * width));
      for (size_t i = 0; i < tables.size(); ++i) tables[i] = static_cast<int32_t>(i);
      std::vector<float> q(static_cast<size_t>(L * kHeads * kDim)), out(q.size());
      for (auto& x : q) x = nd(rng);
      const int32_t pad = 0, cached = 0;
      const double pre = median_ms(reps, [&] {
        ops::attention_prefill_paged(q.data(), kHeads * kDim, ck.data(), cv.data(), ops::DType::F32, tables.data(),
                                     width, &pad, &cached, out.data(), 1, L, kHeads, kKvHeads, kDim, kBlock, 0.125f);
      });
      std::vector<int32_t> starts(static_cast<size_t>(rows), 0),
          lens(static_cast<size_t>(rows), static_cast<int32_t>(L));
      std::vector<float> dq(static_cast<size_t>(rows * kHeads * kDim)), dout(dq.size());
      for (auto& x : dq) x = nd(rng);
      const double dec = median_ms(reps * 4, [&] {
        ops::attention_decode(dq.data(), kHeads * kDim, ck.data(), cv.data(), ops::DType::F32, tables.data(), width,
                              starts.data(), lens.data(), dout.data(), rows, kHeads, kKvHeads, kDim, kBlock, 0.125f);
      });
      const double pre_flop = 4.0 * L * L / 2 * kDim * kHeads, dec_flop = 4.0 * L * kDim * kHeads * rows;
      std::printf("| %s | %lld | %.2f | %.1f | %.3f | %.1f |\n", ops::isa_name(isa), static_cast<long long>(L), pre,
                  pre_flop / pre / 1e6, dec, dec_flop / dec / 1e6);
    }
  }
  return 0;
}
