// tests/kernels/sampling_reference.h — a full-sort reference of worker/sampler.h's draw for the GPU sampler tests
// (tests/kernels/test_cuda_sampling.cpp, tests/gpu/test_cuda_runner.cpp): the token the CPU semantics pick, and
// whether the CPU's own walk passes within a hair of a CDF boundary — where an implementation whose fp32 weights
// differ by a few ulp (CUDA's expf is within 2 ulp, glibc's within 0.502) may legitimately pick the neighbouring
// token. Double sums of the CPU's fp32 weights, in the CPU's order (logit descending, ties to the lowest id), after
// logit_bias, the min_tokens mask, the penalties and min-p.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <unordered_map>
#include <vector>

#include "kernels/philox.h"
#include "worker/sampler.h"

namespace tessera::sampling_test {

// Boundary distance below which two implementations may pick neighbouring tokens, relative to the target:
// the running sum and the target each off by up to 2.5 ulp (2^-23) of their weights, times 1.6 for slack.
inline constexpr double kBoundaryRel = 8.0 / 8388608.0;  // 9.5e-7
// Plus an absolute term for the GPU's weights, rounded to multiples of 2^-F (F >= 39 up to V = 2^24): at most
// V · 2^-(F+1) off in any sum (weights are in units of the largest one).
inline constexpr double kBoundaryAbs = 1e-8;

struct Reference {
  int32_t token = -1;
  bool near_boundary = false;  // the top-p target or the draw's target within the margin of a running sum
  bool greedy = false;
};

// Distance from target to the running sums on either side of the first index whose sum reaches it (the start
// of the order is not a boundary between two tokens).
inline double boundary_distance(const std::vector<double>& cum, size_t index, double target) {
  const double after = std::abs(cum[index] - target);
  const double before = index > 0 ? std::abs(target - cum[index - 1]) : INFINITY;
  return std::min(after, before);
}
inline bool near(double distance, double target) { return distance <= kBoundaryRel * target + kBoundaryAbs; }

// Steps 1–4 of worker/sampler.h one token at a time: logit_bias, the min_tokens mask, the repetition penalty
// (each token of the prompt or the generated ones once), the presence / frequency penalties.
inline Reference reference(std::span<const float> logits, const SamplingParams& p, uint64_t step,
                           const std::unordered_map<int32_t, int32_t>& counts, const SamplingLists& lists = {}) {
  std::vector<float> z(logits.begin(), logits.end());
  for (const LogitBias& e : lists.logit_bias) z[static_cast<size_t>(e.token)] += e.bias;
  if (p.repetition_penalty != 1.0f) {
    std::vector<bool> repeated(z.size(), false);
    for (int32_t t : lists.prompt_tokens) repeated[static_cast<size_t>(t)] = true;
    for (const auto& [t, n] : counts)
      if (n > 0) repeated[static_cast<size_t>(t)] = true;
    for (size_t t = 0; t < z.size(); ++t)
      if (repeated[t]) z[t] = z[t] > 0.0f ? z[t] / p.repetition_penalty : z[t] * p.repetition_penalty;
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (const auto& [t, n] : counts)
      if (n > 0) z[static_cast<size_t>(t)] -= p.frequency_penalty * static_cast<float>(n) + p.presence_penalty;
  }
  if (step < static_cast<uint64_t>(p.min_tokens))
    for (int32_t t : lists.stop_ids) z[static_cast<size_t>(t)] = -INFINITY;
  std::vector<int32_t> order(z.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  Reference r;
  if (p.temperature < kGreedyTemperature) {
    r.token = order[0];
    r.greedy = true;
    return r;
  }
  const float zmax = z[static_cast<size_t>(order[0])], inv_t = 1.0f / p.temperature;
  std::vector<double> w;
  for (int32_t t : order) {
    const float wt = std::exp((z[static_cast<size_t>(t)] - zmax) * inv_t);
    // min-p compares one weight with min_p: within a few ulp of it, the GPU's expf may decide the other way.
    if (p.min_p > 0.0f && std::abs(static_cast<double>(wt) - p.min_p) <= 4e-7 * p.min_p) r.near_boundary = true;
    if (wt <= 0.0f || wt < p.min_p) break;  // the weights only decrease along the order
    w.push_back(wt);
  }
  if (p.top_k >= 1 && static_cast<size_t>(p.top_k) < w.size()) w.resize(static_cast<size_t>(p.top_k));
  std::vector<double> cum(w.size());
  std::partial_sum(w.begin(), w.end(), cum.begin());
  size_t n_kept = w.size();
  if (p.top_p < 1.0f) {
    const double target = static_cast<double>(p.top_p) * cum.back();
    const size_t cut = static_cast<size_t>(std::lower_bound(cum.begin(), cum.end(), target) - cum.begin());
    n_kept = std::min(cut + 1, w.size());
    if (near(boundary_distance(cum, std::min(cut, w.size() - 1), target), target)) r.near_boundary = true;
  }
  const double kept = cum[n_kept - 1];
  const double target = static_cast<double>(philox::sampling_uniform(p.seed, step, 0)) * kept;
  const size_t pick =
      std::min(static_cast<size_t>(std::upper_bound(cum.begin(), cum.begin() + static_cast<ptrdiff_t>(n_kept), target) -
                                   cum.begin()),
               n_kept - 1);
  if (near(boundary_distance(cum, pick, target), target)) r.near_boundary = true;
  r.token = order[pick];
  return r;
}

}  // namespace tessera::sampling_test
