// tests/worker/test_sampler.cpp — Philox known answers, and the sampler's semantics: greedy, temperature,
// top-k, top-p, penalties, seeded determinism, empirical distributions, logprobs, and errors.
// Every random input comes from fixed seeds, so each test gives the same verdict on every run.
#include "worker/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/check.h"
#include "kernels/philox.h"

namespace tessera::sampler {
namespace {

using Counts = std::unordered_map<int32_t, int32_t>;
const Counts kNoCounts;

// ----------------------------------------------------------------------------------------------------------
// Philox4x32-10

// Random123's kat_vectors for philox4x32_10: (counter, key) → output.
TEST(Philox, Random123KnownAnswers) {
  struct Kat {
    philox::Counter ctr;
    philox::Key key;
    uint32_t expected[4];
  };
  const Kat kats[] = {
      {{{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u}},
       {{0x00000000u, 0x00000000u}},
       {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       {{0xffffffffu, 0xffffffffu}},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {{0xa4093822u, 0x299f31d0u}},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& kat : kats) {
    const philox::Counter out = philox::philox4x32_10(kat.ctr, kat.key);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out.w[i], kat.expected[i]) << "word " << i;
  }
}

TEST(Philox, CounterAndKeyLayout) {
  const philox::Counter c = philox::sampling_counter(5, 7);
  EXPECT_EQ(c.w[0], 5u);
  EXPECT_EQ(c.w[1], 7u);
  EXPECT_EQ(c.w[2], 0u);
  EXPECT_EQ(c.w[3], 0u);
  const philox::Counter big = philox::sampling_counter((uint64_t{3} << 32) | 9u, 1);
  EXPECT_EQ(big.w[0], 9u);
  EXPECT_EQ(big.w[1], 1u);
  EXPECT_EQ(big.w[2], 3u);
  const philox::Key k = philox::key_from_seed(0x0123456789abcdefull);
  EXPECT_EQ(k.w[0], 0x89abcdefu);
  EXPECT_EQ(k.w[1], 0x01234567u);
}

TEST(Philox, UniformIsIn01With24Bits) {
  EXPECT_EQ(philox::uniform_from_bits(0u), 0.0f);
  EXPECT_EQ(philox::uniform_from_bits(0xffffffffu), 1.0f - 1.0f / 16777216.0f);
  EXPECT_LT(philox::uniform_from_bits(0xffffffffu), 1.0f);
  EXPECT_EQ(philox::uniform_from_bits(0x80000000u), 0.5f);
  // The low 8 bits do not matter; every higher bit does.
  EXPECT_EQ(philox::uniform_from_bits(0x000000ffu), 0.0f);
  EXPECT_GT(philox::uniform_from_bits(0x00000100u), 0.0f);

  double sum = 0.0;
  int below_tenth = 0;
  const int n = 100000;
  for (int step = 0; step < n; ++step) {
    const float u = philox::sampling_uniform(12345, static_cast<uint64_t>(step), 0);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
    below_tenth += u < 0.1f;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);                  // sd of the mean: 0.29 / sqrt(1e5) ≈ 0.0009
  EXPECT_NEAR(below_tenth / double(n), 0.1, 0.005);  // sd: 0.00095
}

TEST(Philox, EveryInputChangesTheUniform) {
  const float u = philox::sampling_uniform(1, 2, 3);
  EXPECT_EQ(u, philox::sampling_uniform(1, 2, 3));
  EXPECT_NE(u, philox::sampling_uniform(2, 2, 3));
  EXPECT_NE(u, philox::sampling_uniform(1, 3, 3));
  EXPECT_NE(u, philox::sampling_uniform(1, 2, 4));
  EXPECT_NE(u, philox::sampling_uniform(1 | (uint64_t{1} << 40), 2, 3));  // the seed's high word is keyed
  EXPECT_NE(u, philox::sampling_uniform(1, 2 | (uint64_t{1} << 40), 3));  // so is the step's
}

// ----------------------------------------------------------------------------------------------------------
// helpers

// Normal(0, sd) logits from a fixed mt19937 stream (mt19937's output is specified, so this is portable).
std::vector<float> random_logits(size_t n, uint32_t seed, float sd = 3.0f) {
  std::mt19937 gen(seed);
  const auto unit = [&] { return (static_cast<double>(gen() >> 8) + 0.5) / 16777216.0; };
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = static_cast<float>(sd * std::sqrt(-2.0 * std::log(unit())) * std::cos(6.283185307179586 * unit()));
  }
  return v;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp((logits[i] - m) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

int32_t reference_argmax(const std::vector<float>& z) {
  return static_cast<int32_t>(std::max_element(z.begin(), z.end()) - z.begin());  // first maximum
}

// Pearson's chi-square of observed counts against expected probabilities; cells with p = 0 must be empty.
double chi_square(const std::vector<int>& observed, const std::vector<double>& p, int n) {
  double chi2 = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      if (observed[i] != 0) return std::numeric_limits<double>::infinity();
      continue;
    }
    const double e = p[i] * n;
    chi2 += (observed[i] - e) * (observed[i] - e) / e;
  }
  return chi2;
}

// 99.99th percentile of chi-square with 5 degrees of freedom is 25.7: with fixed seeds the test is stable,
// and a wrong distribution (see ChiSquareHasPower) lands far above it.
constexpr double kChi2Limit5Dof = 25.7;

std::set<int32_t> tokens_over_seeds(const std::vector<float>& logits, SamplingParams p, int n_seeds,
                                    const SamplingLists& lists = {}, uint64_t step = 0) {
  std::set<int32_t> seen;
  for (int s = 0; s < n_seeds; ++s) {
    p.seed = static_cast<uint64_t>(s);
    seen.insert(sample(logits, p, step, kNoCounts, lists).token);
  }
  return seen;
}

// ----------------------------------------------------------------------------------------------------------
// greedy

TEST(Sampler, GreedyIsArgmaxWithTiesToLowestId) {
  SamplingParams p;
  p.temperature = 0.0f;
  for (uint32_t s = 0; s < 20; ++s) {
    const std::vector<float> logits = random_logits(1000 + s * 37, s);
    EXPECT_EQ(sample(logits, p, s, kNoCounts).token, reference_argmax(logits));
  }
  const std::vector<float> tied = {1.0f, 3.0f, -2.0f, 3.0f, 2.0f};
  EXPECT_EQ(sample(tied, p, 0, kNoCounts).token, 1);
  const std::vector<float> one = {-7.0f};
  EXPECT_EQ(sample(one, p, 0, kNoCounts).token, 0);
}

TEST(Sampler, TemperatureToZeroEqualsGreedy) {
  for (uint32_t s = 0; s < 20; ++s) {
    std::vector<float> logits = random_logits(4096, 100 + s);
    const int32_t best = reference_argmax(logits);
    // Make the runner-up at least 0.1 below the best, so T = 1e-3 leaves it weight exp(-100) ≈ 0 in fp32 terms.
    for (float& x : logits) {
      if (&x != &logits[best]) x = std::min(x, logits[best] - 0.1f);
    }
    for (float t : {0.0f, 1e-7f, 9e-6f, 1e-3f}) {
      SamplingParams p;
      p.temperature = t;
      p.seed = s;
      EXPECT_EQ(sample(logits, p, s, kNoCounts).token, best) << "T = " << t;
    }
  }
}

TEST(Sampler, TopKOneEqualsGreedy) {
  for (uint32_t s = 0; s < 30; ++s) {
    const std::vector<float> logits = random_logits(2000, 200 + s, 1.0f);
    SamplingParams p;
    p.top_k = 1;
    p.temperature = 5.0f;  // a flat distribution: only top-k can explain the greedy answer
    p.seed = 1000 + s;
    EXPECT_EQ(sample(logits, p, s, kNoCounts).token, reference_argmax(logits));
  }
  // Ties: top-1 of four equal logits is the lowest id, for every seed.
  const std::vector<float> flat(4, 0.5f);
  SamplingParams p;
  p.top_k = 1;
  EXPECT_EQ(tokens_over_seeds(flat, p, 200), (std::set<int32_t>{0}));
}

// ----------------------------------------------------------------------------------------------------------
// distributions

struct DistributionCase {
  std::vector<float> logits;
  SamplingParams params;
  std::vector<double> expected;
};

// Draws n tokens, either over seeds 0..n-1 at one step or over steps 0..n-1 with one seed.
std::vector<int> histogram(const DistributionCase& c, int n, bool over_steps) {
  std::vector<int> counts(c.logits.size(), 0);
  SamplingParams p = c.params;
  for (int i = 0; i < n; ++i) {
    uint64_t step = 3;
    if (over_steps) {
      step = static_cast<uint64_t>(i);
    } else {
      p.seed = static_cast<uint64_t>(i);
    }
    ++counts[static_cast<size_t>(sample(c.logits, p, step, kNoCounts).token)];
  }
  return counts;
}

std::vector<double> renormalized(std::vector<double> p, const std::set<int32_t>& keep) {
  double sum = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (!keep.count(static_cast<int32_t>(i))) p[i] = 0.0;
    sum += p[i];
  }
  for (double& x : p) x /= sum;
  return p;
}

TEST(Sampler, EmpiricalDistributionMatchesSoftmax) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.3f};
  std::vector<DistributionCase> cases;
  for (float t : {1.0f, 0.7f, 1.6f}) {
    SamplingParams p;
    p.temperature = t;
    p.seed = 77;
    cases.push_back({logits, p, softmax(logits, t)});
  }
  {  // top-k 3 → renormalized over tokens {3, 5, 0}
    SamplingParams p;
    p.top_k = 3;
    p.seed = 77;
    cases.push_back({logits, p, renormalized(softmax(logits, 1.0), {3, 5, 0})});
  }
  {  // top-p: sorted probabilities at T=1 are .445 .221 .164 .074 .060 .037 (tokens 3 5 0 1 4 2);
     // cumulative .445 .666 .830 — top_p 0.7 keeps the first three.
    SamplingParams p;
    p.top_p = 0.7f;
    p.seed = 77;
    cases.push_back({logits, p, renormalized(softmax(logits, 1.0), {3, 5, 0})});
  }
  const int n = 20000;
  for (size_t i = 0; i < cases.size(); ++i) {
    for (bool over_steps : {false, true}) {
      const std::vector<int> h = histogram(cases[i], n, over_steps);
      EXPECT_LT(chi_square(h, cases[i].expected, n), kChi2Limit5Dof)
          << "case " << i << (over_steps ? " over steps" : " over seeds");
    }
  }
}

TEST(Sampler, ChiSquareHasPower) {
  // The same statistic rejects a distribution that is only slightly off (T = 0.85 drawn, T = 1 expected).
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.3f};
  SamplingParams p;
  p.temperature = 0.85f;
  const DistributionCase c{logits, p, softmax(logits, 1.0)};
  EXPECT_GT(chi_square(histogram(c, 20000, false), c.expected, 20000), 5 * kChi2Limit5Dof);
}

TEST(Sampler, TopKNeverReturnsExcludedAndReturnsAllAllowed) {
  const std::vector<float> logits = {0.1f, 2.0f, 0.3f, 1.9f, -1.0f, 1.8f, 0.0f, 0.2f};
  SamplingParams p;
  p.temperature = 2.0f;
  p.top_k = 3;
  EXPECT_EQ(tokens_over_seeds(logits, p, 2000), (std::set<int32_t>{1, 3, 5}));
  // Ties at the boundary go to the lowest ids.
  const std::vector<float> flat(10, 1.0f);
  p.top_k = 4;
  EXPECT_EQ(tokens_over_seeds(flat, p, 2000), (std::set<int32_t>{0, 1, 2, 3}));
  // top_k >= vocab, 0 and -1 are all off.
  for (int32_t k : {10, 11, 0, -1}) {
    p.top_k = k;
    EXPECT_EQ(tokens_over_seeds(flat, p, 2000).size(), 10u) << "top_k " << k;
  }
}

TEST(Sampler, TopPNeverReturnsExcludedAndReturnsAllAllowed) {
  // Probabilities .4 .3 .2 .1 (tokens 2 0 3 1): cumulative .4 .7 .9 1.
  const std::vector<float> logits = {std::log(0.3f), std::log(0.1f), std::log(0.4f), std::log(0.2f)};
  SamplingParams p;
  const struct {
    float top_p;
    std::set<int32_t> kept;
  } cases[] = {
      {1e-6f, {2}},       {0.39f, {2}},          {0.41f, {2, 0}},      {0.65f, {2, 0}},
      {0.75f, {2, 0, 3}}, {0.95f, {2, 0, 3, 1}}, {1.0f, {2, 0, 3, 1}},
  };
  for (const auto& c : cases) {
    p.top_p = c.top_p;
    EXPECT_EQ(tokens_over_seeds(logits, p, 2000), c.kept) << "top_p " << c.top_p;
  }
  // top-p applies to the distribution renormalized after top-k: top-2 leaves {2: 4/7, 0: 3/7}.
  p.top_k = 2;
  p.top_p = 0.55f;
  EXPECT_EQ(tokens_over_seeds(logits, p, 2000), (std::set<int32_t>{2}));
  p.top_p = 0.6f;
  EXPECT_EQ(tokens_over_seeds(logits, p, 2000), (std::set<int32_t>{2, 0}));
}

// ----------------------------------------------------------------------------------------------------------
// seeding and determinism

TEST(Sampler, SameSeedAndStepGiveSameTokenDifferentStepsDiffer) {
  const std::vector<float> flat(1000, 0.0f);
  SamplingParams p;
  p.seed = 7;
  std::set<int32_t> over_steps;
  for (uint64_t step = 0; step < 200; ++step) {
    const int32_t t = sample(flat, p, step, kNoCounts).token;
    EXPECT_EQ(sample(flat, p, step, kNoCounts).token, t);
    over_steps.insert(t);
  }
  // 200 uniform draws from 1000 tokens hit ~181 distinct ones; a step that does not reach the RNG would give 1.
  EXPECT_GT(over_steps.size(), 150u);
  std::set<int32_t> over_seeds;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    p.seed = seed;
    over_seeds.insert(sample(flat, p, 5, kNoCounts).token);
  }
  EXPECT_GT(over_seeds.size(), 150u);
}

TEST(Sampler, DrawIsTheInverseCdfOfThePhiloxUniform) {
  // Probabilities .4 .3 .2 .1 in descending order are tokens 2 0 3 1: u picks by its bin.
  const std::vector<float> logits = {std::log(0.3f), std::log(0.1f), std::log(0.4f), std::log(0.2f)};
  SamplingParams p;
  for (uint64_t step = 0; step < 500; ++step) {
    p.seed = step * 31 + 1;
    const double u = philox::sampling_uniform(p.seed, step, 0);
    // Stay clear of the bin edges, where fp32 rounding of the logits decides.
    if (std::abs(u - 0.4) < 1e-4 || std::abs(u - 0.7) < 1e-4 || std::abs(u - 0.9) < 1e-4) continue;
    const int32_t expected = u < 0.4 ? 2 : u < 0.7 ? 0 : u < 0.9 ? 3 : 1;
    EXPECT_EQ(sample(logits, p, step, kNoCounts).token, expected) << "u = " << u;
  }
}

// A brute-force reference: full sort, no laziness, same fp32 weights.
// Steps in sampler.h's order, written out one token at a time.
int32_t reference_sample(const std::vector<float>& raw, const SamplingParams& p, uint64_t step, const Counts& counts,
                         const SamplingLists& lists = {}) {
  std::vector<float> z = raw;
  for (const LogitBias& e : lists.logit_bias) z[e.token] += e.bias;
  if (p.repetition_penalty != 1.0f) {
    std::set<int32_t> seen(lists.prompt_tokens.begin(), lists.prompt_tokens.end());
    for (const auto& [t, c] : counts)
      if (c > 0) seen.insert(t);
    for (int32_t t : seen) z[t] = z[t] > 0.0f ? z[t] / p.repetition_penalty : z[t] * p.repetition_penalty;
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (const auto& [t, c] : counts) {
      if (c > 0) z[t] -= p.frequency_penalty * static_cast<float>(c) + p.presence_penalty;
    }
  }
  if (step < static_cast<uint64_t>(p.min_tokens))
    for (int32_t t : lists.stop_ids) z[t] = -std::numeric_limits<float>::infinity();
  std::vector<int32_t> order(z.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  if (p.temperature < kGreedyTemperature) return order[0];
  if (p.top_k >= 1 && static_cast<size_t>(p.top_k) < order.size()) order.resize(p.top_k);
  const float z_max = z[order[0]];
  const float inv_t = 1.0f / p.temperature;
  std::vector<double> w;
  for (int32_t t : order) {
    const float wt = std::exp((z[t] - z_max) * inv_t);
    w.push_back(wt < p.min_p ? 0.0f : wt);
  }
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  size_t n_kept = order.size();
  if (p.top_p < 1.0f) {
    double mass = 0.0;
    for (size_t i = 0; i < order.size(); ++i) {
      mass += w[i];
      if (mass >= p.top_p * total) {
        n_kept = i + 1;
        break;
      }
    }
  }
  const double kept_mass = std::accumulate(w.begin(), w.begin() + n_kept, 0.0);
  while (n_kept > 1 && w[n_kept - 1] == 0.0) --n_kept;  // dropped by min-p (or underflow): never drawn
  const double target = philox::sampling_uniform(p.seed, step, 0) * kept_mass;
  double mass = 0.0;
  for (size_t i = 0; i < n_kept; ++i) {
    mass += w[i];
    if (mass > target) return order[i];
  }
  return order[n_kept - 1];
}

TEST(Sampler, LargeVocabularyMatchesFullSortReference) {
  const size_t vocab = 152064;
  const std::vector<float> logits = random_logits(vocab, 4242, 2.5f);
  struct Case {
    float t, top_p;
    int32_t top_k;
    float presence, frequency;
  };
  const Case cases[] = {
      {1.0f, 1.0f, -1, 0, 0},       {0.8f, 0.9f, -1, 0, 0},        {0.7f, 1.0f, 50, 0, 0},  {1.2f, 0.95f, 40, 0, 0},
      {1.0f, 0.5f, 5000, 0, 0},     {3.0f, 1.0f, -1, 0, 0},        {0.3f, 0.99f, -1, 0, 0}, {0.0f, 1.0f, -1, 0, 0},
      {1.0f, 0.9f, -1, 1.5f, 0.5f}, {0.9f, 1.0f, 20, -1.0f, 0.3f},
  };
  Counts counts;
  for (int32_t i = 0; i < 64; ++i) counts[reference_argmax(logits) ^ i] = 1 + i % 4;
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.t;
    p.top_p = c.top_p;
    p.top_k = c.top_k;
    p.presence_penalty = c.presence;
    p.frequency_penalty = c.frequency;
    const Counts& cc = (c.presence != 0 || c.frequency != 0) ? counts : kNoCounts;
    for (uint64_t s = 0; s < 12; ++s) {
      p.seed = s * 1000003;
      EXPECT_EQ(sample(logits, p, s, cc).token, reference_sample(logits, p, s, cc))
          << "T " << c.t << " top_p " << c.top_p << " top_k " << c.top_k << " seed " << p.seed;
    }
  }
}

TEST(Sampler, DeterministicAcrossCallsAndBatchCompany) {
  const std::vector<float> a = random_logits(49152, 1, 2.0f);
  const std::vector<float> b = random_logits(152064, 2, 0.5f);
  SamplingParams pa;
  pa.temperature = 0.9f;
  pa.top_p = 0.9f;
  pa.seed = 99;
  pa.n_logprobs = 5;
  SamplingParams pb;
  pb.top_k = 7;
  pb.seed = 99;
  const SampleResult alone = sample(a, pa, 11, kNoCounts);
  // Whatever runs in between (other vocab sizes, other settings) leaves no trace in the next call.
  for (int i = 0; i < 3; ++i) (void)sample(b, pb, static_cast<uint64_t>(i), kNoCounts);
  const SampleResult again = sample(a, pa, 11, kNoCounts);
  EXPECT_EQ(again.token, alone.token);
  EXPECT_EQ(again.logprob, alone.logprob);
  EXPECT_EQ(again.top_logprobs, alone.top_logprobs);
}

// ----------------------------------------------------------------------------------------------------------
// penalties

TEST(Sampler, PenaltiesChangeTheArgmaxAsExpected) {
  const std::vector<float> logits = {2.0f, 1.9f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  EXPECT_EQ(sample(logits, p, 0, {{0, 1}}).token, 0);  // no penalty set: counts alone change nothing

  p.presence_penalty = 0.5f;  // 2.0 - 0.5 < 1.9
  EXPECT_EQ(sample(logits, p, 0, {{0, 1}}).token, 1);
  EXPECT_EQ(sample(logits, p, 0, {{0, 0}}).token, 0);  // a zero count is no presence
  EXPECT_EQ(sample(logits, p, 0, {{2, 5}}).token, 0);  // penalizing another token changes nothing

  p.presence_penalty = 0.0f;
  p.frequency_penalty = 0.03f;
  EXPECT_EQ(sample(logits, p, 0, {{0, 3}}).token, 0);  // 2.0 - 0.09 = 1.91 > 1.9
  EXPECT_EQ(sample(logits, p, 0, {{0, 4}}).token, 1);  // 2.0 - 0.12 = 1.88 < 1.9

  p.frequency_penalty = -1.5f;                         // negative penalties encourage repetition
  EXPECT_EQ(sample(logits, p, 0, {{2, 2}}).token, 2);  // 0 + 3 > 2

  // Both at once: 2.0 - (0.2 * 2 + 0.3) = 1.3 and 1.9 - (0.2 + 0.3) = 1.4: token 1 still wins over 0.
  p.frequency_penalty = 0.2f;
  p.presence_penalty = 0.3f;
  EXPECT_EQ(sample(logits, p, 0, {{0, 2}, {1, 1}}).token, 1);
  EXPECT_EQ(sample(logits, p, 0, {{0, 2}, {1, 4}}).token, 0);  // 1.9 - 1.1 = 0.8 < 1.3

  // The logprob stays the raw model's.
  const std::vector<double> raw = softmax(logits, 1.0);
  EXPECT_NEAR(sample(logits, p, 0, {{0, 2}, {1, 1}}).logprob, std::log(raw[1]), 1e-5);
}

TEST(Sampler, PenaltiesShiftTheSampledDistribution) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.3f};
  SamplingParams p;
  p.presence_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  const Counts counts = {{3, 2}, {5, 1}};
  std::vector<float> shifted = logits;
  shifted[3] -= 2.0f;
  shifted[5] -= 1.5f;
  const std::vector<double> expected = softmax(shifted, 1.0);
  std::vector<int> h(logits.size(), 0);
  const int n = 20000;
  for (int s = 0; s < n; ++s) {
    p.seed = static_cast<uint64_t>(s);
    ++h[static_cast<size_t>(sample(logits, p, 1, counts).token)];
  }
  EXPECT_LT(chi_square(h, expected, n), kChi2Limit5Dof);
}

// ----------------------------------------------------------------------------------------------------------
// logprobs

TEST(Sampler, LogprobsComeFromTheRawDistribution) {
  const std::vector<float> logits = random_logits(3000, 55, 2.0f);
  const std::vector<double> raw = softmax(logits, 1.0);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  for (float t : {0.0f, 0.5f, 1.0f, 2.0f}) {
    SamplingParams p;
    p.temperature = t;
    p.top_k = 10;
    p.n_logprobs = 20;
    p.seed = 3;
    const SampleResult r = sample(logits, p, 0, kNoCounts);
    EXPECT_NEAR(r.logprob, std::log(raw[r.token]), 1e-4) << "T " << t;
    ASSERT_EQ(r.top_logprobs.size(), 20u);
    for (size_t i = 0; i < 20; ++i) {
      EXPECT_EQ(r.top_logprobs[i].first, order[i]);
      EXPECT_NEAR(r.top_logprobs[i].second, std::log(raw[order[i]]), 1e-4);
    }
  }
  // Ties by lowest id; fewer tokens than asked → all of them; 0 → none.
  SamplingParams p;
  p.n_logprobs = 3;
  const std::vector<float> tied = {0.0f, 1.0f, 1.0f, 0.5f, 1.0f};
  const SampleResult r = sample(tied, p, 0, kNoCounts);
  ASSERT_EQ(r.top_logprobs.size(), 3u);
  EXPECT_EQ(r.top_logprobs[0].first, 1);
  EXPECT_EQ(r.top_logprobs[1].first, 2);
  EXPECT_EQ(r.top_logprobs[2].first, 4);
  p.n_logprobs = 20;
  EXPECT_EQ(sample(tied, p, 0, kNoCounts).top_logprobs.size(), 5u);
  p.n_logprobs = 0;
  EXPECT_TRUE(sample(tied, p, 0, kNoCounts).top_logprobs.empty());
  // Large logits do not overflow the normalizer.
  const std::vector<float> huge = {3e38f, 3e38f, -3e38f};
  p.temperature = 0.0f;
  const SampleResult h = sample(huge, p, 0, kNoCounts);
  EXPECT_EQ(h.token, 0);
  EXPECT_NEAR(h.logprob, std::log(0.5), 1e-6);
}

// ----------------------------------------------------------------------------------------------------------
// logit_bias, min_tokens, repetition penalty, min-p

TEST(Sampler, LogitBiasChangesTheGreedyArgmax) {
  const std::vector<float> logits = {2.0f, 1.9f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  SamplingLists lists;
  lists.logit_bias = {{0, -100.0f}};
  EXPECT_EQ(sample(logits, p, 0, kNoCounts, lists).token, 1);
  lists.logit_bias = {{2, 2.5f}};  // 0 + 2.5 > 2.0
  EXPECT_EQ(sample(logits, p, 0, kNoCounts, lists).token, 2);
  lists.logit_bias = {{2, 1.5f}};  // 0 + 1.5 < 2.0: the argmax stays
  EXPECT_EQ(sample(logits, p, 0, kNoCounts, lists).token, 0);
  // Logprobs stay those of the raw distribution.
  lists.logit_bias = {{0, -100.0f}};
  const SampleResult biased = sample(logits, p, 0, kNoCounts, lists);
  EXPECT_EQ(biased.token, 1);
  EXPECT_NEAR(biased.logprob, 1.9 - std::log(std::exp(2.0) + std::exp(1.9) + 1.0), 1e-6);
  // A bias of -100 removes a token from sampling in practice: never drawn over many seeds.
  p.temperature = 1.0f;
  const std::vector<float> flat(8, 0.0f);
  lists.logit_bias = {{3, -100.0f}, {5, -100.0f}};
  EXPECT_EQ(tokens_over_seeds(flat, p, 400, lists), (std::set<int32_t>{0, 1, 2, 4, 6, 7}));
}

TEST(Sampler, MinTokensMasksTheStopIdsUntilReached) {
  // Token 0 (the "EOS") is far ahead: greedy and sampled draws alike pick it as soon as they may.
  const std::vector<float> logits = {10.0f, 1.0f, 0.5f, 0.0f, 9.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.min_tokens = 3;
  SamplingLists lists;
  lists.stop_ids = {0, 4};
  for (uint64_t step = 0; step < 3; ++step) EXPECT_EQ(sample(logits, p, step, kNoCounts, lists).token, 1) << step;
  EXPECT_EQ(sample(logits, p, 3, kNoCounts, lists).token, 0);  // min_tokens reached: EOS again
  p.min_tokens = 0;
  EXPECT_EQ(sample(logits, p, 0, kNoCounts, lists).token, 0);  // off
  p.temperature = 1.0f;
  p.min_tokens = 2;
  EXPECT_EQ(tokens_over_seeds(logits, p, 500, lists, /*step=*/1), (std::set<int32_t>{1, 2, 3}));
  EXPECT_TRUE(tokens_over_seeds(logits, p, 200, lists, /*step=*/2).count(0) == 1);
  // Masking the whole vocabulary is an error, not a crash.
  lists.stop_ids = {0, 1, 2, 3, 4};
  EXPECT_THROW((void)sample(logits, p, 0, kNoCounts, lists), Error);
}

TEST(Sampler, RepetitionPenaltyOverPromptAndGeneratedTokensOnce) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 1.5f;
  SamplingLists lists;
  lists.prompt_tokens = {0};
  // Positive logits are divided: 2.0 / 1.5 < 1.9.
  EXPECT_EQ(sample(std::vector<float>{2.0f, 1.9f, 0.0f}, p, 0, kNoCounts, lists).token, 1);
  // Negative ones multiplied: -1.0 · 1.5 < -1.2.
  EXPECT_EQ(sample(std::vector<float>{-1.0f, -1.2f}, p, 0, kNoCounts, lists).token, 1);
  // Generated tokens too, without the prompt.
  EXPECT_EQ(sample(std::vector<float>{2.0f, 1.9f, 0.0f}, p, 0, {{0, 1}}).token, 1);
  // A token in the prompt and generated is penalized once: 1.9 / 1.5 > 1.0 (twice would be < 1.0).
  lists.prompt_tokens = {1};
  EXPECT_EQ(sample(std::vector<float>{1.0f, 1.9f, 1.0f}, p, 0, {{1, 2}}, lists).token, 1);
  p.repetition_penalty = 1.0f;  // off: the prompt list changes nothing
  lists.prompt_tokens = {0};
  EXPECT_EQ(sample(std::vector<float>{2.0f, 1.9f, 0.0f}, p, 0, kNoCounts, lists).token, 0);
}

TEST(Sampler, MinPDropsTokensBelowTheFractionOfTheLargestProbability) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 at T = 1.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p;
  EXPECT_EQ(tokens_over_seeds(logits, p, 600), (std::set<int32_t>{0, 1, 2, 3}));
  p.min_p = 0.2f;  // threshold 0.1: drops token 3
  EXPECT_EQ(tokens_over_seeds(logits, p, 600), (std::set<int32_t>{0, 1, 2}));
  p.min_p = 0.5f;  // threshold 0.25
  EXPECT_EQ(tokens_over_seeds(logits, p, 600), (std::set<int32_t>{0, 1}));
  p.min_p = 1.0f;  // only the most probable
  EXPECT_EQ(tokens_over_seeds(logits, p, 100), (std::set<int32_t>{0}));
  // After temperature: at T = 2 the probabilities flatten (weights sqrt of the ratios), so min_p 0.5 keeps 0, 1, 2
  // (sqrt(0.3) and sqrt(0.15 / 0.5) = 0.548 >= 0.5), drops 3 (sqrt(0.1) = 0.316).
  p.temperature = 2.0f;
  p.min_p = 0.5f;
  EXPECT_EQ(tokens_over_seeds(logits, p, 600), (std::set<int32_t>{0, 1, 2}));
  // The survivors keep their relative probabilities: renormalized over {0, 1} at T = 1, token 0 has 0.625.
  p.temperature = 1.0f;
  p.min_p = 0.5f;
  int n0 = 0;
  constexpr int kDraws = 4000;
  for (int s = 0; s < kDraws; ++s) {
    p.seed = static_cast<uint64_t>(s);
    n0 += sample(logits, p, 0, kNoCounts).token == 0;
  }
  EXPECT_NEAR(static_cast<double>(n0) / kDraws, 0.625, 0.03);
}

TEST(Sampler, NewFieldsMatchTheFullSortReference) {
  const size_t vocab = 49152;
  const std::vector<float> logits = random_logits(vocab, 777, 2.5f);
  const int32_t top = reference_argmax(logits);
  Counts counts;
  for (int32_t i = 0; i < 40; ++i) counts[(top ^ i) % static_cast<int32_t>(vocab)] = 1 + i % 3;
  SamplingLists lists;
  lists.logit_bias = {{top, -100.0f}, {5, 8.0f}, {77, -3.5f}, {1234, 4.25f}};
  lists.stop_ids = {0, (top + 1) % static_cast<int32_t>(vocab)};
  for (int32_t t = 100; t < 400; t += 7) lists.prompt_tokens.push_back(t);
  lists.prompt_tokens.push_back(top ^ 1);
  std::sort(lists.prompt_tokens.begin(), lists.prompt_tokens.end());
  lists.prompt_tokens.erase(std::unique(lists.prompt_tokens.begin(), lists.prompt_tokens.end()),
                            lists.prompt_tokens.end());
  struct Case {
    float t, top_p, min_p, rep;
    int32_t top_k, min_tokens;
    float presence;
  };
  const Case cases[] = {
      {0.0f, 1.0f, 0.0f, 1.3f, -1, 5, 0.0f},   {1.0f, 1.0f, 0.05f, 1.0f, -1, 0, 0.0f},
      {0.8f, 0.9f, 0.1f, 1.2f, -1, 5, 0.5f},   {1.2f, 1.0f, 0.01f, 0.8f, 40, 5, 0.0f},
      {1.0f, 0.95f, 0.0f, 1.5f, 200, 0, 1.0f}, {2.0f, 1.0f, 0.3f, 1.1f, -1, 9, -0.5f},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.t;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.repetition_penalty = c.rep;
    p.top_k = c.top_k;
    p.min_tokens = c.min_tokens;
    p.presence_penalty = c.presence;
    for (uint64_t s = 0; s < 10; ++s) {
      p.seed = s * 7919 + 1;
      EXPECT_EQ(sample(logits, p, s, counts, lists).token, reference_sample(logits, p, s, counts, lists))
          << "T " << c.t << " top_p " << c.top_p << " min_p " << c.min_p << " rep " << c.rep << " top_k " << c.top_k
          << " min_tokens " << c.min_tokens << " step " << s;
    }
  }
}

TEST(Sampler, SeededDrawsWithTheNewFieldsIgnoreBatchCompany) {
  // The same row (logits, params, lists, step) alone and after other rows with other lists and settings.
  const std::vector<float> a = random_logits(49152, 11, 2.0f);
  const std::vector<float> b = random_logits(49152, 12, 1.0f);
  SamplingParams pa;
  pa.temperature = 0.9f;
  pa.min_p = 0.02f;
  pa.repetition_penalty = 1.3f;
  pa.min_tokens = 4;
  pa.seed = 5;
  SamplingLists la;
  la.logit_bias = {{reference_argmax(a), -100.0f}, {17, 3.0f}};
  la.stop_ids = {2};
  la.prompt_tokens = {3, 9, 400};
  const Counts ca = {{7, 2}, {400, 1}};
  std::vector<SampleResult> alone;
  for (uint64_t step = 0; step < 8; ++step) alone.push_back(sample(a, pa, step, ca, la));
  SamplingParams pb;
  pb.temperature = 1.4f;
  pb.top_k = 3;
  pb.min_tokens = 100;
  pb.seed = 5;  // the same seed as the other row
  SamplingLists lb;
  lb.logit_bias = {{reference_argmax(b), 50.0f}};
  lb.stop_ids = {0, 1, 2, 3};
  for (uint64_t step = 0; step < 8; ++step) {
    (void)sample(b, pb, step, {{1, 1}}, lb);
    const SampleResult again = sample(a, pa, step, ca, la);
    (void)sample(b, pb, step + 1, kNoCounts, lb);
    EXPECT_EQ(again.token, alone[step].token) << step;
    EXPECT_EQ(again.logprob, alone[step].logprob) << step;
  }
  // And the draws do depend on the seed and step, not on the row's neighbours alone.
  std::set<int32_t> tokens;
  for (const SampleResult& r : alone) tokens.insert(r.token);
  EXPECT_GT(tokens.size(), 1u);
}

// ----------------------------------------------------------------------------------------------------------
// errors

void expect_error_naming(const SamplingParams& p, const std::string& field) {
  const std::vector<float> logits = {0.0f, 1.0f};
  try {
    (void)sample(logits, p, 0, kNoCounts);
    ADD_FAILURE() << "no error for " << field;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
  EXPECT_THROW(p.validate(), Error);
}

TEST(Sampler, InvalidParamsNameTheField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float t : {-1.0f, nan, inf}) {
    SamplingParams p;
    p.temperature = t;
    expect_error_naming(p, "temperature");
  }
  {
    SamplingParams p;
    p.temperature = -1.0f;
    try {
      p.validate();
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "temperature must be >= 0 and finite, got -1");
    }
  }
  for (float v : {0.0f, -0.1f, 1.01f, nan}) {
    SamplingParams p;
    p.top_p = v;
    expect_error_naming(p, "top_p");
  }
  {
    SamplingParams p;
    p.top_k = -2;
    expect_error_naming(p, "top_k");
  }
  for (float v : {2.5f, -2.01f, nan}) {
    SamplingParams p;
    p.presence_penalty = v;
    expect_error_naming(p, "presence_penalty");
    p.presence_penalty = 0.0f;
    p.frequency_penalty = v;
    expect_error_naming(p, "frequency_penalty");
  }
  for (int32_t n : {-1, 21}) {
    SamplingParams p;
    p.n_logprobs = n;
    expect_error_naming(p, "n_logprobs");
  }
  for (float v : {-0.01f, 1.01f, nan}) {
    SamplingParams p;
    p.min_p = v;
    expect_error_naming(p, "min_p");
  }
  for (float v : {0.0f, -1.0f, 2.01f, nan}) {
    SamplingParams p;
    p.repetition_penalty = v;
    expect_error_naming(p, "repetition_penalty");
  }
  {
    SamplingParams p;
    p.min_tokens = -1;
    expect_error_naming(p, "min_tokens");
  }
  // The edges of every range are valid.
  SamplingParams ok;
  ok.temperature = 0.0f;
  ok.top_p = 1.0f;
  ok.top_k = 0;
  ok.presence_penalty = -2.0f;
  ok.frequency_penalty = 2.0f;
  ok.n_logprobs = 20;
  ok.min_p = 1.0f;
  ok.repetition_penalty = 2.0f;
  ok.min_tokens = 0;
  EXPECT_NO_THROW(ok.validate());
  ok.min_p = 0.0f;
  ok.repetition_penalty = 1e-3f;
  EXPECT_NO_THROW(ok.validate());
}

TEST(Sampler, InvalidListsNameTheList) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  SamplingParams p;
  auto bias_list = [](std::vector<LogitBias> v) {
    SamplingLists l;
    l.logit_bias = std::move(v);
    return l;
  };
  auto stop_list = [](std::vector<int32_t> v) {
    SamplingLists l;
    l.stop_ids = std::move(v);
    return l;
  };
  auto prompt_list = [](std::vector<int32_t> v) {
    SamplingLists l;
    l.prompt_tokens = std::move(v);
    return l;
  };
  auto expect_error = [&](const SamplingLists& lists, const std::string& what) {
    try {
      (void)sample(logits, p, 0, kNoCounts, lists);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(bias_list({{3, 1.0f}}), "logit_bias token 3 is outside the vocabulary");
  expect_error(bias_list({{-1, 1.0f}}), "logit_bias");
  expect_error(bias_list({{1, 100.5f}}), "[-100, 100]");
  expect_error(bias_list({{1, std::numeric_limits<float>::quiet_NaN()}}), "[-100, 100]");
  expect_error(bias_list({{1, 1.0f}, {1, 2.0f}}), "twice");
  expect_error(bias_list(std::vector<LogitBias>(301, LogitBias{0, 0.0f})), "at most 300");
  expect_error(stop_list({7}), "stop token id 7");
  expect_error(prompt_list({2, 1}), "ascending");
  expect_error(prompt_list({5}), "prompt token 5");
  EXPECT_NO_THROW((void)sample(logits, p, 0, kNoCounts, bias_list({{2, 100.0f}, {0, -100.0f}})));
}

TEST(Sampler, NonFiniteLogitsAreAnError) {
  SamplingParams p;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> logits(100, 0.0f);
    logits[42] = bad;
    for (float t : {0.0f, 1.0f}) {
      p.temperature = t;
      try {
        (void)sample(logits, p, 0, kNoCounts);
        ADD_FAILURE() << "no error for " << bad;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("logits[42]"), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_THROW((void)sample(std::span<const float>(), p, 0, kNoCounts), Error);
}

}  // namespace
}  // namespace tessera::sampler
