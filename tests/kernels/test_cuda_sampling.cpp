// tests/kernels/test_cuda_sampling.cpp — the GPU sampler (gpu::sample_tokens) against the CPU sampler
// (worker/sampler.h, sampler::sample) row by row: V 1, 7, 4099, 49152, 151936; batches of up to 16 rows with
// mixed settings (greedy, temperature 0.3 / 0.7 / 1 / 1.5, top-k 1 / 5 / 50 / V-1 / V+5, top-p 0.05 / 0.5 / 0.9 / 1,
// presence / frequency penalties with counts, logit_bias, min_tokens with stop ids, repetition penalties over
// prompt and generated tokens, min-p, n_logprobs 0 / 1 / 5 / 20, many seeds and steps) over Gaussian,
// peaked, flat (every logit equal), tied (few distinct values), wide and nearly flat (all in one weight bin:
// the radix-refinement path) logits; the Philox uniform against the host's bit for bit; non-finite logits and
// bad penalty entries as per-row errors; argument checks; determinism and batch-company invariance.
//
// What must match, and why:
// - greedy tokens, top-k membership and the top logprobs' ids depend only on the order of the fp32 (penalized)
//   logits, which the GPU computes bit for bit like the CPU: identical, always.
// - logprobs: within 1e-5 (the normalizer is a sum of expf's; CUDA's expf is within 2 ulp, glibc's 0.502).
// - sampled tokens: identical, except where the CPU's own walk is within a hair of a CDF boundary: the target
//   (top_p · mass, or u · kept mass) within kBoundaryRel of a running sum, relative (each fp32 weight may differ by
//   2.5 ulp between the two expf's, and the GPU rounds weights to multiples of 2^-F). A host-side full-sort
//   reference (double sums of the CPU's fp32 weights) measures that distance; a different token is accepted only
//   there, and such cases must stay below 0.5% of the sampled rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/check.h"
#include "kernels/cuda/sampling.cuh"
#include "kernels/philox.h"
#include "tests/kernels/sampling_reference.h"
#include "tests/kernels/test_cuda_util.h"
#include "worker/sampler.h"

namespace tessera::gpu::testing {
namespace {

using Counts = std::unordered_map<int32_t, int32_t>;
using sampling_test::reference;
using sampling_test::Reference;

constexpr double kLogprobTol = 1e-5;
constexpr double kMaxMismatchFraction = 0.005;

// A typed device array (raw bytes; T is trivially copyable).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& v) : n_(v.size()) {
    alloc();
    if (n_ > 0) TESSERA_CUDA_CHECK(cudaMemcpy(p_, v.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  DeviceArray(size_t n, unsigned char fill) : n_(n) {
    alloc();
    if (n_ > 0) TESSERA_CUDA_CHECK(cudaMemset(p_, fill, n_ * sizeof(T)));
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (p_ != nullptr) cudaFree(p_);
  }
  T* get() const { return static_cast<T*>(p_); }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
    if (n_ > 0) TESSERA_CUDA_CHECK(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }

 private:
  void alloc() {
    if (n_ > 0) TESSERA_CUDA_CHECK(cudaMalloc(&p_, n_ * sizeof(T)));
  }
  void* p_ = nullptr;
  size_t n_ = 0;
};

struct RowCase {
  std::vector<float> logits;  // [V]
  SamplingParams p;
  uint64_t step = 0;
  Counts counts;
  SamplingLists lists;
};

// A row's edits as the CUDA runner lays them out (worker/cuda/device_sampling.cpp), except that every count is
// listed, whatever the penalties (the kernel must ignore the ones no penalty uses), zeros included.
std::vector<SampleEdit> edits_of(const RowCase& r) {
  std::map<int32_t, SampleEdit> m;
  auto at = [&](int32_t t) -> SampleEdit& { return m.try_emplace(t, SampleEdit{t, 0, 0.0f, 0u}).first->second; };
  for (const auto& [t, c] : r.counts) at(t).count = c;
  for (const LogitBias& e : r.lists.logit_bias) at(e.token).bias = e.bias;
  for (int32_t t : r.lists.prompt_tokens) at(t).flags |= kSampleInPrompt;
  for (int32_t t : r.lists.stop_ids) at(t).flags |= kSampleStopId;  // the kernel masks them before min_tokens
  std::vector<SampleEdit> out;
  for (const auto& [t, e] : m) out.push_back(e);
  return out;
}

SampleParams to_device(const SamplingParams& p, uint64_t step) { return SampleParams{p, step}; }

// Every row through one sample_tokens call (all rows of one V). Outputs and the workspace are poisoned first:
// the kernel must write every output field and clear the bitmaps it uses.
std::vector<SampleOut> run_gpu(const std::vector<RowCase>& rows, int64_t V, bool with_penalty_arrays = true) {
  const int64_t B = static_cast<int64_t>(rows.size());
  std::vector<float> all;
  std::vector<SampleParams> params;
  std::vector<int32_t> offsets{0};
  std::vector<SampleEdit> edits;
  for (const RowCase& r : rows) {
    EXPECT_EQ(static_cast<int64_t>(r.logits.size()), V);
    all.insert(all.end(), r.logits.begin(), r.logits.end());
    params.push_back(to_device(r.p, r.step));
    // Sorted by token, so that the CSR (and hence the test) does not depend on the map's iteration order.
    const std::vector<SampleEdit> row = edits_of(r);
    edits.insert(edits.end(), row.begin(), row.end());
    offsets.push_back(static_cast<int32_t>(edits.size()));
  }
  DeviceArray<float> d_logits(all);
  DeviceArray<SampleParams> d_params(params);
  DeviceArray<int32_t> d_off(offsets);
  // An empty edit array is still a non-null pointer to the kernel: give it one element.
  DeviceArray<SampleEdit> d_edits(edits.empty() ? std::vector<SampleEdit>{SampleEdit{0, 0, 0.0f, 0u}} : edits);
  const size_t ws_bytes = sample_workspace_bytes(B, V);
  DeviceArray<unsigned char> ws(ws_bytes, 0xAB);
  DeviceArray<SampleOut> out(static_cast<size_t>(B), 0xFF);
  if (with_penalty_arrays) {
    TESSERA_STATUS_CHECK(sample_tokens(d_logits.get(), B, V, d_params.get(), d_off.get(), d_edits.get(), ws.get(),
                                       ws_bytes, out.get(), nullptr));
  } else {
    TESSERA_STATUS_CHECK(
        sample_tokens(d_logits.get(), B, V, d_params.get(), nullptr, nullptr, nullptr, 0, out.get(), nullptr));
  }
  TESSERA_CUDA_CHECK(cudaGetLastError());
  return out.download();
}

// --- case generation ------------------------------------------------------------------------------------------
enum class Dist { kGauss, kPeaked, kFlat, kTied, kWide, kNearlyFlat };
const char* dist_name(Dist d) {
  switch (d) {
    case Dist::kGauss:
      return "gauss";
    case Dist::kPeaked:
      return "peaked";
    case Dist::kFlat:
      return "flat";
    case Dist::kTied:
      return "tied";
    case Dist::kWide:
      return "wide";
    case Dist::kNearlyFlat:
      return "nearly-flat";
  }
  return "?";
}

std::vector<float> make_logits(Dist d, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(V));
  for (auto& v : x) {
    switch (d) {
      case Dist::kGauss:
        v = 2.5f * n01(rng) + 1.0f;
        break;
      case Dist::kPeaked:
        v = n01(rng);
        break;
      case Dist::kFlat:
        v = 0.75f;
        break;
      case Dist::kTied:
        v = std::round(2.0f * n01(rng)) * 0.5f;  // ~13 distinct values
        break;
      case Dist::kWide:
        v = 12.0f * n01(rng);
        break;
      case Dist::kNearlyFlat:
        v = 3.0f + 1e-3f * n01(rng);  // distinct values, all in one or two bins of 1/8 octave
        break;
    }
  }
  if (d == Dist::kPeaked) {
    std::uniform_int_distribution<int64_t> at(0, V - 1);
    x[static_cast<size_t>(at(rng))] = 14.0f;
    x[static_cast<size_t>(at(rng))] = 12.5f;
  }
  return x;
}

// A random mix of the settings the issue lists, one per row.
SamplingParams make_params(int64_t V, std::mt19937& rng) {
  auto pick = [&](const auto& options) { return options[rng() % options.size()]; };
  SamplingParams p;
  const std::vector<float> temps{0.0f, 0.3f, 0.7f, 1.0f, 1.0f, 1.5f};
  const std::vector<int64_t> ks{-1, -1, 0, 1, 5, 50, V - 1, V + 5};
  const std::vector<float> top_ps{1.0f, 1.0f, 0.05f, 0.5f, 0.9f};
  const std::vector<int32_t> n_lps{0, 0, 1, 5, 20};
  p.temperature = pick(temps);
  const int64_t k = pick(ks);
  p.top_k = static_cast<int32_t>(std::max<int64_t>(k, -1));
  p.top_p = pick(top_ps);
  p.n_logprobs = pick(n_lps);
  if (rng() % 3 == 0) {
    p.presence_penalty = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
    p.frequency_penalty = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
  }
  const std::vector<float> min_ps{0.0f, 0.0f, 0.0f, 0.01f, 0.1f, 0.5f};
  const std::vector<float> reps{1.0f, 1.0f, 1.0f, 0.7f, 1.2f, 2.0f};
  p.min_p = pick(min_ps);
  p.repetition_penalty = pick(reps);
  if (rng() % 3 == 0) p.min_tokens = static_cast<int32_t>(rng() % 600);
  p.seed = (static_cast<uint64_t>(rng()) << 32) | rng();
  return p;
}

// Generated-token counts: the argmax (so that a penalty changes the greedy pick), a few random tokens, some with
// count 0 (no penalty).
Counts make_counts(const std::vector<float>& x, std::mt19937& rng) {
  Counts c;
  const int64_t V = static_cast<int64_t>(x.size());
  c[static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin())] = 1 + static_cast<int32_t>(rng() % 3);
  const int n = static_cast<int>(std::min<int64_t>(V, 40));
  for (int i = 0; i < n; ++i)
    c[static_cast<int32_t>(rng() % static_cast<uint64_t>(V))] = static_cast<int32_t>(rng() % 4);
  return c;
}

// logit_bias (the argmax pushed down by 100 or up, a few random tokens), stop ids (the argmax among them, so
// that the min_tokens mask changes the greedy pick) and prompt tokens (ascending, distinct).
SamplingLists make_lists(const std::vector<float>& x, std::mt19937& rng) {
  SamplingLists l;
  const int64_t V = static_cast<int64_t>(x.size());
  const auto top = static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());
  const auto any = [&] { return static_cast<int32_t>(rng() % static_cast<uint64_t>(V)); };
  std::map<int32_t, float> bias;
  if (rng() % 2 == 0) bias[top] = rng() % 2 == 0 ? -100.0f : 5.0f;
  const int n_bias = static_cast<int>(rng() % 12);
  for (int i = 0; i < n_bias; ++i) bias[any()] = std::uniform_real_distribution<float>(-100.0f, 100.0f)(rng);
  for (const auto& [t, b] : bias) l.logit_bias.push_back({t, b});
  if (V > 1) {
    if (rng() % 2 == 0) l.stop_ids.push_back(top);
    const int n_stop = static_cast<int>(rng() % 4);
    for (int i = 0; i < n_stop; ++i) l.stop_ids.push_back(any());
    std::sort(l.stop_ids.begin(), l.stop_ids.end());
    l.stop_ids.erase(std::unique(l.stop_ids.begin(), l.stop_ids.end()), l.stop_ids.end());
    if (static_cast<int64_t>(l.stop_ids.size()) == V) l.stop_ids.pop_back();  // leave something to sample
  }
  const int n_prompt = static_cast<int>(rng() % 64);
  for (int i = 0; i < n_prompt; ++i) l.prompt_tokens.push_back(any());
  if (rng() % 2 == 0) l.prompt_tokens.push_back(top);
  std::sort(l.prompt_tokens.begin(), l.prompt_tokens.end());
  l.prompt_tokens.erase(std::unique(l.prompt_tokens.begin(), l.prompt_tokens.end()), l.prompt_tokens.end());
  return l;
}

struct Tally {
  int64_t rows = 0, sampled = 0, mismatches = 0, near = 0, refined = 0;
};

// The passes a row takes without refinement (sampling.cuh): 2, + 1 per search (top-k, top-p, draw), + 2 for
// the top logprobs (a search and a gather). Refinement adds at least 2 (the bin's key range, one digit pass), so
// more than this means a bin held more than kSampleCandidates tokens (top-k counts as a search whenever
// top_k < V; it is skipped when fewer weights are positive, which only lowers the count).
int base_passes(const SamplingParams& p, int64_t V) {
  int n = 2;
  const bool greedy = p.temperature < kGreedyTemperature || p.top_k == 1;
  if (!greedy) {
    if (p.top_k >= 1 && p.top_k < V) ++n;  // (min-p may leave fewer than top_k: the search is skipped)
    if (p.top_p < 1.0f) ++n;
    ++n;
  }
  if (p.n_logprobs > 0) n += 2;
  return n;
}

// Compares the GPU's rows with the CPU sampler and the reference; counts into t.
void check_rows(const std::vector<RowCase>& rows, const std::vector<SampleOut>& out, const std::string& what,
                Tally& t) {
  ASSERT_EQ(out.size(), rows.size());
  for (size_t b = 0; b < rows.size(); ++b) {
    const RowCase& c = rows[b];
    const SampleOut& o = out[b];
    SCOPED_TRACE(what + " row " + std::to_string(b) + " T " + std::to_string(c.p.temperature) + " top_k " +
                 std::to_string(c.p.top_k) + " top_p " + std::to_string(c.p.top_p) + " pen " +
                 std::to_string(c.p.presence_penalty) + "/" + std::to_string(c.p.frequency_penalty) + " rep " +
                 std::to_string(c.p.repetition_penalty) + " min_p " + std::to_string(c.p.min_p) + " min_tokens " +
                 std::to_string(c.p.min_tokens) + " bias " + std::to_string(c.lists.logit_bias.size()) + " seed " +
                 std::to_string(c.p.seed) + " step " + std::to_string(c.step));
    ASSERT_EQ(o.error, SampleError::kNone) << sample_error_text(o, static_cast<int64_t>(b));
    const sampler::SampleResult cpu = sampler::sample(c.logits, c.p, c.step, c.counts, c.lists);
    const Reference ref = reference(c.logits, c.p, c.step, c.counts, c.lists);
    ++t.rows;
    // The reference is the CPU's semantics by a different route: it must agree off the boundaries.
    if (!ref.near_boundary) {
      EXPECT_EQ(ref.token, cpu.token) << "host reference disagrees with the CPU sampler";
    }
    if (ref.greedy) {
      EXPECT_EQ(o.token, cpu.token) << "greedy";
    } else {
      ++t.sampled;
      t.near += ref.near_boundary;
      if (o.token != cpu.token) {
        ++t.mismatches;
        EXPECT_TRUE(ref.near_boundary) << "GPU token " << o.token << " != CPU token " << cpu.token
                                       << " away from any CDF boundary";
      }
    }
    if (o.token == cpu.token) {
      EXPECT_NEAR(o.logprob, cpu.logprob, kLogprobTol) << "token " << o.token;
    }
    ASSERT_EQ(o.n_top, static_cast<int32_t>(cpu.top_logprobs.size()));
    for (int i = 0; i < o.n_top; ++i) {
      EXPECT_EQ(o.top_ids[i], cpu.top_logprobs[static_cast<size_t>(i)].first) << "top " << i;
      EXPECT_NEAR(o.top_logprobs[i], cpu.top_logprobs[static_cast<size_t>(i)].second, kLogprobTol) << "top " << i;
    }
    t.refined += o.n_passes > base_passes(c.p, static_cast<int64_t>(c.logits.size()));
  }
}

std::vector<int64_t> vocabs() {
  if (quick()) return {7, 4099, 151936};
  return {1, 7, 4099, 49152, 151936};
}

TEST(CudaSampling, PhiloxUniformIsTheHostsBitForBit) {
  TESSERA_SKIP_WITHOUT_GPU();
  std::vector<uint64_t> seeds, steps;
  std::vector<uint32_t> draws;
  std::mt19937_64 rng(7);
  const uint64_t edge[] = {0, 1, 0xffffffffull, 0x100000000ull, ~0ull, 0x8000000000000000ull};
  for (uint64_t s : edge)
    for (uint64_t st : edge) seeds.push_back(s), steps.push_back(st), draws.push_back(0);
  for (int i = 0; i < 100000; ++i) {
    seeds.push_back(rng());
    steps.push_back(i % 3 == 0 ? rng() : static_cast<uint64_t>(i));
    draws.push_back(i % 5 == 0 ? static_cast<uint32_t>(rng()) : 0u);
  }
  DeviceArray<uint64_t> d_seeds(seeds), d_steps(steps);
  DeviceArray<uint32_t> d_draws(draws);
  DeviceArray<float> out(seeds.size(), 0xFF);
  TESSERA_STATUS_CHECK(sampling_uniforms(d_seeds.get(), d_steps.get(), d_draws.get(), out.get(),
                                         static_cast<int64_t>(seeds.size()), nullptr));
  const auto got = out.download();
  int64_t bad = 0;
  for (size_t i = 0; i < seeds.size(); ++i) {
    const float want = philox::sampling_uniform(seeds[i], steps[i], draws[i]);
    if (std::memcmp(&got[i], &want, sizeof(float)) != 0 && bad++ < 5)
      ADD_FAILURE() << "seed " << seeds[i] << " step " << steps[i] << " draw " << draws[i] << ": " << got[i]
                    << " != " << want;
  }
  EXPECT_EQ(bad, 0);
}

// The main sweep: for every V and distribution, batches of up to 16 rows with random settings.
TEST(CudaSampling, MatchesCpuSamplerOverShapesAndSettings) {
  TESSERA_SKIP_WITHOUT_GPU();
  Tally t;
  const Dist dists[] = {Dist::kGauss, Dist::kPeaked, Dist::kFlat, Dist::kTied, Dist::kWide, Dist::kNearlyFlat};
  std::mt19937 rng(2024);
  for (int64_t V : vocabs()) {
    const int batches = quick() ? 1 : (V >= 49152 ? 3 : 6);
    for (Dist d : dists) {
      for (int batch = 0; batch < batches; ++batch) {
        const int64_t B = batch == 0 ? 16 : 1 + static_cast<int64_t>(rng() % 16);
        std::vector<RowCase> rows;
        for (int64_t b = 0; b < B; ++b) {
          RowCase c;
          // Half the rows share the first row's logits (different settings on the same distribution).
          c.logits = (b % 2 == 1) ? rows[0].logits : make_logits(d, V, static_cast<uint32_t>(rng()));
          c.p = make_params(V, rng);
          c.step = rng() % 4 == 0 ? (static_cast<uint64_t>(rng()) << 32 | rng()) : rng() % 512;
          if (c.p.presence_penalty != 0.0f || rng() % 4 == 0) c.counts = make_counts(c.logits, rng);
          if (rng() % 3 == 0) {
            c.lists = make_lists(c.logits, rng);
            if (c.p.min_tokens > 0 && rng() % 2 == 0) c.step = rng() % static_cast<uint64_t>(c.p.min_tokens);
          }
          rows.push_back(std::move(c));
        }
        check_rows(rows, run_gpu(rows, V),
                   std::string("V ") + std::to_string(V) + " " + dist_name(d) + " batch " + std::to_string(batch), t);
      }
    }
  }
  std::printf(
      "[gpu sampling] %lld rows, %lld sampled, %lld near a CDF boundary, %lld GPU != CPU (all near), "
      "%lld took radix refinement\n",
      static_cast<long long>(t.rows), static_cast<long long>(t.sampled), static_cast<long long>(t.near),
      static_cast<long long>(t.mismatches), static_cast<long long>(t.refined));
  EXPECT_LE(static_cast<double>(t.mismatches), kMaxMismatchFraction * static_cast<double>(t.sampled));
  EXPECT_GT(t.refined, 0) << "no row exercised the radix refinement (a bin with > " << kSampleCandidates
                          << " tokens at the crossing)";
}

// Many seeds and steps on one distribution per setting: the draws cover the whole CDF, tails included.
TEST(CudaSampling, ManySeedsAndStepsMatchTheCpu) {
  TESSERA_SKIP_WITHOUT_GPU();
  Tally t;
  const int64_t V = quick() ? 4099 : 49152;
  const int n_rows = quick() ? 64 : 512;
  struct Setting {
    float t, top_p;
    int32_t top_k;
  };
  const Setting settings[] = {{1.0f, 1.0f, -1}, {0.7f, 0.9f, -1}, {1.5f, 1.0f, 50}, {0.3f, 0.5f, 5}};
  for (Dist d : {Dist::kGauss, Dist::kTied}) {
    const std::vector<float> x = make_logits(d, V, 99);
    for (const Setting& s : settings) {
      std::vector<RowCase> rows;
      for (int i = 0; i < n_rows; ++i) {
        RowCase c;
        c.logits = x;
        c.p.temperature = s.t;
        c.p.top_p = s.top_p;
        c.p.top_k = s.top_k;
        c.p.seed = 1000003ull * static_cast<uint64_t>(i / 8);
        c.step = static_cast<uint64_t>(i % 8);
        rows.push_back(std::move(c));
        if (rows.size() == 16 || i + 1 == n_rows) {
          check_rows(rows, run_gpu(rows, V, /*with_penalty_arrays=*/false),
                     std::string(dist_name(d)) + " T " + std::to_string(s.t), t);
          rows.clear();
        }
      }
    }
  }
  std::printf("[gpu sampling, seeds] %lld sampled, %lld near a CDF boundary, %lld GPU != CPU\n",
              static_cast<long long>(t.sampled), static_cast<long long>(t.near), static_cast<long long>(t.mismatches));
  EXPECT_LE(static_cast<double>(t.mismatches), kMaxMismatchFraction * static_cast<double>(t.sampled));
}

// The same inputs give byte-identical outputs on every run, and a row's result does not depend on its batch.
TEST(CudaSampling, DeterministicAndIndependentOfBatchCompany) {
  TESSERA_SKIP_WITHOUT_GPU();
  const int64_t V = quick() ? 4099 : 151936;
  std::mt19937 rng(5);
  std::vector<RowCase> rows;
  for (int b = 0; b < 12; ++b) {
    RowCase c;
    c.logits = make_logits(b % 3 == 0 ? Dist::kNearlyFlat : Dist::kGauss, V, static_cast<uint32_t>(b));
    c.p = make_params(V, rng);
    c.p.temperature = 1.0f;
    c.p.n_logprobs = 5;
    c.step = static_cast<uint64_t>(b);
    if (b % 2 == 0) {
      c.p.presence_penalty = 0.5f;
      c.counts = make_counts(c.logits, rng);
    }
    if (b % 3 == 1) {  // the new fields: their rows too are independent of the batch
      c.p.min_p = 0.05f;
      c.p.repetition_penalty = 1.3f;
      c.p.min_tokens = 100;
      c.lists = make_lists(c.logits, rng);
      c.counts = make_counts(c.logits, rng);
    }
    rows.push_back(std::move(c));
  }
  const auto first = run_gpu(rows, V);
  for (int run = 0; run < 3; ++run) {
    const auto again = run_gpu(rows, V);
    ASSERT_EQ(std::memcmp(first.data(), again.data(), first.size() * sizeof(SampleOut)), 0) << "run " << run;
  }
  for (size_t b = 0; b < rows.size(); b += 5) {
    const auto alone = run_gpu({rows[b]}, V);
    EXPECT_EQ(std::memcmp(&alone[0], &first[b], sizeof(SampleOut)), 0) << "row " << b << " alone";
  }
}

// A non-finite logit is an error of its row, naming the row and the index; the other rows are unaffected.
TEST(CudaSampling, NonFiniteLogitIsAnErrorNamingRowAndIndex) {
  TESSERA_SKIP_WITHOUT_GPU();
  const int64_t V = 4099;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    for (float temp : {0.0f, 1.0f}) {
      std::vector<RowCase> rows(4);
      for (size_t b = 0; b < rows.size(); ++b) {
        rows[b].logits = make_logits(Dist::kGauss, V, static_cast<uint32_t>(b + 11));
        rows[b].p.temperature = temp;
        rows[b].p.seed = b;
      }
      rows[2].logits[42] = bad;
      rows[2].logits[4000] = bad;  // the first one is reported, as on the CPU
      const auto out = run_gpu(rows, V);
      EXPECT_EQ(out[2].error, SampleError::kNonFiniteLogit);
      EXPECT_EQ(out[2].error_index, 42);
      EXPECT_EQ(out[2].token, -1);
      const std::string msg = sample_error_text(out[2], 2);
      EXPECT_NE(msg.find("row 2: logits[42] is "), std::string::npos) << msg;
      EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
      try {
        (void)sampler::sample(rows[2].logits, rows[2].p, 0, {});
        ADD_FAILURE() << "the CPU sampler accepted a non-finite logit";
      } catch (const tessera::Error& e) {  // the same wording as the CPU's message, after "row 2: "
        EXPECT_EQ(msg, std::string("row 2: ") + e.what());
      }
      Tally t;
      for (size_t b : {0u, 1u, 3u}) {
        std::vector<RowCase> one{rows[b]};
        check_rows(one, {out[b]}, "healthy row " + std::to_string(b), t);
      }
    }
  }
}

// Bad edit lists are per-row errors (the CPU treats bad counts as a caller bug and aborts).
TEST(CudaSampling, BadPenaltyEntriesAreReported) {
  TESSERA_SKIP_WITHOUT_GPU();
  const int64_t V = 100;
  const std::vector<float> x = make_logits(Dist::kGauss, V, 3);
  std::vector<float> all;
  for (int b = 0; b < 4; ++b) all.insert(all.end(), x.begin(), x.end());
  SampleParams p;
  p.sampling.presence_penalty = 1.0f;
  const std::vector<SampleParams> params(4, p);
  // Row 0: fine. Row 1: token 100 (outside V). Row 2: token 5 twice (reported: the smallest repeated token's first
  // entry, whichever thread saw the repeat). Row 3: a bias past 100.
  const std::vector<int32_t> offsets{0, 2, 4, 7, 8};
  const std::vector<SampleEdit> edits{{1, 1, 0.0f, 0u}, {2, 1, 0.0f, 0u}, {3, 1, 0.0f, 0u}, {100, 1, 0.0f, 0u},
                                      {5, 1, 0.0f, 0u}, {6, 1, 0.0f, 0u}, {5, 2, 0.0f, 0u}, {7, 0, 101.0f, 0u}};
  DeviceArray<float> d_x(all);
  DeviceArray<SampleParams> d_p(params);
  DeviceArray<int32_t> d_off(offsets);
  DeviceArray<SampleEdit> d_edits(edits);
  DeviceArray<unsigned char> ws(sample_workspace_bytes(4, V), 0x00);
  DeviceArray<SampleOut> out(4, 0xFF);
  TESSERA_STATUS_CHECK(sample_tokens(d_x.get(), 4, V, d_p.get(), d_off.get(), d_edits.get(), ws.get(),
                                     sample_workspace_bytes(4, V), out.get(), nullptr));
  const auto o = out.download();
  EXPECT_EQ(o[0].error, SampleError::kNone);
  EXPECT_EQ(o[1].error, SampleError::kBadPenalty);
  EXPECT_EQ(o[1].error_index, 1);
  EXPECT_EQ(o[2].error, SampleError::kBadPenalty);
  EXPECT_EQ(o[2].error_index, 0);
  EXPECT_EQ(o[2].error_value, 5.0f);
  EXPECT_EQ(o[3].error, SampleError::kBadPenalty);
  EXPECT_EQ(o[3].error_index, 0);
  EXPECT_NE(sample_error_text(o[1], 1).find("row 1: edit 1 (token 100)"), std::string::npos)
      << sample_error_text(o[1], 1);
}

// The new fields on small rows where each decides the greedy token: the GPU picks what the CPU picks.
TEST(CudaSampling, LogitBiasMinTokensRepetitionAndMinPActLikeTheCpu) {
  TESSERA_SKIP_WITHOUT_GPU();
  const std::vector<float> x = {2.0f, 1.9f, 0.0f, -1.0f, 10.0f};
  std::vector<RowCase> rows;
  auto row = [&](SamplingParams p, uint64_t step, SamplingLists lists, Counts counts, int32_t want) {
    RowCase c;
    c.logits = x;
    c.p = p;
    c.step = step;
    c.lists = std::move(lists);
    c.counts = std::move(counts);
    rows.push_back(std::move(c));
    return want;
  };
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  std::vector<int32_t> want;
  SamplingLists bias;
  bias.logit_bias = {{4, -100.0f}};
  want.push_back(row(greedy, 0, bias, {}, 0));  // the argmax biased away
  bias.logit_bias = {{4, -100.0f}, {2, 2.5f}};
  want.push_back(row(greedy, 0, bias, {}, 2));
  SamplingParams min_tokens = greedy;
  min_tokens.min_tokens = 2;
  SamplingLists stops;
  stops.stop_ids = {4, 0};
  want.push_back(row(min_tokens, 1, stops, {}, 1));  // masked before min_tokens
  want.push_back(row(min_tokens, 2, stops, {}, 4));  // not from min_tokens on
  SamplingParams rep = greedy;
  rep.repetition_penalty = 1.5f;
  SamplingLists prompt;
  prompt.logit_bias = {{4, -100.0f}};
  prompt.prompt_tokens = {0};
  want.push_back(row(rep, 0, prompt, {}, 1));      // 2.0 / 1.5 < 1.9
  want.push_back(row(rep, 0, bias, {{0, 1}}, 2));  // generated tokens too: 2.5 beats 2.0 / 1.5
  SamplingParams min_p;
  min_p.min_p = 0.999f;  // only the argmax survives, whatever the seed
  for (uint64_t seed = 0; seed < 8; ++seed) {
    min_p.seed = seed;
    want.push_back(row(min_p, seed, {}, {}, 4));
  }
  const auto out = run_gpu(rows, static_cast<int64_t>(x.size()));
  Tally t;
  check_rows(rows, out, "new fields", t);
  for (size_t b = 0; b < rows.size(); ++b) EXPECT_EQ(out[b].token, want[b]) << "row " << b;
  // Masking every token is a row error, as on the CPU.
  RowCase all_masked;
  all_masked.logits = {1.0f, 2.0f};
  all_masked.p.min_tokens = 1;
  all_masked.lists.stop_ids = {0, 1};
  const auto bad = run_gpu({all_masked}, 2);
  EXPECT_EQ(bad[0].error, SampleError::kAllMasked);
  EXPECT_NE(sample_error_text(bad[0], 0).find("min_tokens masks every token"), std::string::npos);
}

// Host-visible arguments are checked before any launch, naming the op and the argument.
TEST(CudaSampling, ArgumentsAreValidated) {
  TESSERA_SKIP_WITHOUT_GPU();
  DeviceArray<float> x(std::vector<float>(8, 0.0f));
  DeviceArray<SampleParams> p(std::vector<SampleParams>(1));
  DeviceArray<SampleOut> out(1, 0);
  DeviceArray<int32_t> off(std::vector<int32_t>{0, 0});
  DeviceArray<SampleEdit> edits(std::vector<SampleEdit>{SampleEdit{0, 0, 0.0f, 0u}});
  auto expect_bad = [](const Status& s, const char* arg) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message.find("sample_tokens"), std::string::npos) << s.message;
    EXPECT_NE(s.message.find(std::string("'") + arg + "'"), std::string::npos) << s.message;
  };
  expect_bad(sample_tokens(x.get(), 1, 0, p.get(), nullptr, nullptr, nullptr, 0, out.get(), nullptr), "V");
  expect_bad(
      sample_tokens(x.get(), 1, (int64_t{1} << 24) + 1, p.get(), nullptr, nullptr, nullptr, 0, out.get(), nullptr),
      "V");
  expect_bad(sample_tokens(nullptr, 1, 8, p.get(), nullptr, nullptr, nullptr, 0, out.get(), nullptr), "logits");
  expect_bad(sample_tokens(x.get(), 1, 8, nullptr, nullptr, nullptr, nullptr, 0, out.get(), nullptr), "params");
  expect_bad(sample_tokens(x.get(), 1, 8, p.get(), nullptr, nullptr, nullptr, 0, nullptr, nullptr), "out");
  expect_bad(sample_tokens(x.get(), 1, 8, p.get(), off.get(), nullptr, nullptr, 0, out.get(), nullptr), "edit_offsets");
  expect_bad(sample_tokens(x.get(), 1, 8, p.get(), off.get(), edits.get(), nullptr, 0, out.get(), nullptr),
             "workspace");
  EXPECT_TRUE(sample_tokens(x.get(), 0, 8, p.get(), nullptr, nullptr, nullptr, 0, out.get(), nullptr).ok());
  EXPECT_EQ(sample_workspace_bytes(2, 33), 16u);  // 2 rows · 2 words · 4 bytes
  EXPECT_EQ(sample_mass_bits(152064), 45);
  EXPECT_EQ(sample_mass_bits(1), 52);
}

}  // namespace
}  // namespace tessera::gpu::testing
