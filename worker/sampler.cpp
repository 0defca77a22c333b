// worker/sampler.cpp — logit_bias → min_tokens mask → penalties → temperature → min-p → top-k → top-p → seeded
// inverse-CDF draw (see sampler.h).
//
// Passes over the vocabulary V:
//   1. max + finiteness of the raw logits (vectorizable), 2. fp32 weights exp(logit - max) and their sum (the
//   raw normalizer for logprobs), 3. top logprobs, only when asked, 4. a penalized copy, only when a penalty
//   applies to a generated token, 5. weights exp((z - max) / T), only when T != 1 or penalties apply,
//   6. a histogram of the weights (bins of 1/8 octave), 7. a gather of the tokens in the top bins.
// The histogram bounds what needs ordering: the top-k / top-p / CDF walks only ever visit tokens whose bins
// hold the first `needed` mass (or count), and bins are ordered like the tokens, so only those are gathered.
// Among them a sorted prefix grows geometrically (nth_element on the rest, sort of the new slice) as the walk
// needs it. The result is exactly that of a full sort (tests compare against one); a distribution with no
// spread at all (every logit within 1/8 octave of weight) degrades to sorting what the walk visits.
#include "worker/sampler.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <string>

#include "common/check.h"
#include "kernels/philox.h"

namespace tessera::sampler {
namespace {

// The first slice of the sorted prefix, and how much it grows each time the walk runs past it.
constexpr size_t kFirstSortedSlice = 64;
constexpr size_t kSliceGrowth = 4;

std::string show(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
  return buf;
}

struct Candidate {
  float logit;  // penalized, not temperature-scaled (the order is the same)
  int32_t id;
  float weight;  // exp((logit - max) / T), unnormalized probability, > 0
};

// Descending-probability order with ties to the lowest id: a strict total order, so every sort and
// nth_element below has exactly one possible result and the draw is deterministic.
inline bool before(float logit_a, int32_t id_a, float logit_b, int32_t id_b) {
  return logit_a > logit_b || (logit_a == logit_b && id_a < id_b);
}
inline bool before(const Candidate& a, const Candidate& b) { return before(a.logit, a.id, b.logit, b.id); }
constexpr auto kBefore = [](const Candidate& a, const Candidate& b) { return before(a, b); };

// Weight bins: the float's exponent and top 3 mantissa bits, counted down from 1.0 — monotone in the weight,
// hence in the logit. Weights lie in (0, 1]; every one of them, subnormals included, has a bin.
constexpr uint32_t kBinShift = 20;
constexpr uint32_t kBinOfOne = 0x3f800000u >> kBinShift;
constexpr size_t kBins = kBinOfOne + 1;
inline size_t bin_of(float weight) { return kBinOfOne - (std::bit_cast<uint32_t>(weight) >> kBinShift); }

struct Histogram {
  std::array<double, kBins> mass;
  std::array<uint32_t, kBins> count;
  size_t n_positive = 0;
};

void fill_histogram(std::span<const float> weights, Histogram& h) {
  h.mass.fill(0.0);
  h.count.fill(0);
  for (const float w : weights) {
    if (w > 0.0f) {
      const size_t b = bin_of(w);
      h.mass[b] += w;
      ++h.count[b];
    }
  }
  h.n_positive = 0;
  for (uint32_t c : h.count) h.n_positive += c;
}

// Appends the tokens of positive weight in bins [0, last_bin], in id order.
void gather(std::span<const float> z, std::span<const float> weights, size_t last_bin, std::vector<Candidate>& c) {
  c.clear();
  for (size_t i = 0; i < z.size(); ++i) {
    const float w = weights[i];
    if (w > 0.0f && bin_of(w) <= last_bin) c.push_back({z[i], static_cast<int32_t>(i), w});
  }
}

// Keeps [0, sorted()) of `c` in `before` order, and extends that prefix on demand.
class SortedPrefix {
 public:
  explicit SortedPrefix(std::vector<Candidate>& c) : c_(c) {}
  size_t sorted() const { return sorted_; }
  void extend_to(size_t want) {
    want = std::min(want, c_.size());
    if (want <= sorted_) return;
    if (want < c_.size()) std::nth_element(c_.begin() + sorted_, c_.begin() + want, c_.end(), kBefore);
    std::sort(c_.begin() + sorted_, c_.begin() + want, kBefore);
    sorted_ = want;
  }

 private:
  std::vector<Candidate>& c_;
  size_t sorted_ = 0;
};

struct WalkResult {
  size_t index;  // position of the token where the walk stopped; == limit when the target was not reached
  double mass;   // cumulative weight up to and including it
};

// Walks the candidates in descending order over [0, limit) until the cumulative weight reaches `target`
// (>= when `inclusive`, > otherwise).
WalkResult walk(std::vector<Candidate>& c, SortedPrefix& prefix, size_t limit, double target, bool inclusive) {
  double mass = 0.0;
  size_t slice = kFirstSortedSlice;
  for (size_t i = 0; i < limit; ++i) {
    if (i == prefix.sorted()) {
      prefix.extend_to(i + slice);
      slice *= kSliceGrowth;
    }
    mass += c[i].weight;
    if (inclusive ? mass >= target : mass > target) return {i, mass};
  }
  return {limit, mass};
}

// Sums in four interleaved partial sums: a fixed order (deterministic) that does not serialize on one add.
double sum_exp(std::span<const float> x, float max, float inv_t, std::span<float> weights) {
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  const size_t n = x.size();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (size_t j = 0; j < 4; ++j) {
      // (x - max) <= 0, so the weights lie in [0, 1] and cannot overflow however small T is.
      weights[i + j] = std::exp((x[i + j] - max) * inv_t);
      s[j] += weights[i + j];
    }
  }
  for (; i < n; ++i) {
    weights[i] = std::exp((x[i] - max) * inv_t);
    s[0] += weights[i];
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

struct RawStats {
  float max = 0.0f;
  int32_t argmax = 0;  // lowest id among the maxima
  double sum = 0.0;    // sum(exp(logit - max)) over the vocabulary
  // log(sum). logprob = (logit - max) - log_sum, in that order, so that logits near the fp32 range do not lose
  // the normalizer to rounding.
  double log_sum = 0.0;
  float logprob(float logit) const {
    return static_cast<float>((static_cast<double>(logit) - static_cast<double>(max)) - log_sum);
  }
};

// Eight independent lanes, so the compiler can keep them in one vector register (maxps) with no NaN question:
// the logits are known finite here.
float max_of(std::span<const float> z) {
  float lane[8];
  std::fill(std::begin(lane), std::end(lane), z[0]);
  size_t i = 0;
  for (; i + 8 <= z.size(); i += 8) {
    for (size_t j = 0; j < 8; ++j) lane[j] = z[i + j] > lane[j] ? z[i + j] : lane[j];
  }
  for (; i < z.size(); ++i) lane[0] = z[i] > lane[0] ? z[i] : lane[0];
  float m = lane[0];
  for (const float x : lane) m = x > m ? x : m;
  return m;
}

// Also leaves exp(logit - max) of every token in `weights` (the T = 1 weights, reused when they apply).
RawStats raw_stats(std::span<const float> logits, std::span<float> weights) {
  constexpr uint32_t kExponent = 0x7f800000u;  // all ones: inf or NaN
  uint32_t non_finite = 0;
  for (const float x : logits)
    non_finite |= static_cast<uint32_t>((std::bit_cast<uint32_t>(x) & kExponent) == kExponent);
  if (non_finite) {
    const auto bad = std::find_if(logits.begin(), logits.end(), [](float x) { return !std::isfinite(x); });
    throw Error("logits[" + std::to_string(bad - logits.begin()) + "] is " + show(*bad) +
                ": the model produced a non-finite logit");
  }
  RawStats s;
  const float max = max_of(logits);
  s.max = max;
  s.argmax = static_cast<int32_t>(std::find(logits.begin(), logits.end(), max) - logits.begin());
  s.sum = sum_exp(logits, s.max, 1.0f, weights);
  s.log_sum = std::log(s.sum);
  return s;
}

// The n highest raw logits, descending, ties to the lowest id: one pass with a small insertion-sorted list.
std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int32_t n, const RawStats& raw) {
  std::vector<std::pair<int32_t, float>> top;  // (id, raw logit) while collecting
  const size_t keep = std::min(static_cast<size_t>(n), logits.size());
  top.reserve(keep + 1);
  for (size_t i = 0; i < logits.size(); ++i) {
    const float x = logits[i];
    const auto id = static_cast<int32_t>(i);
    if (top.size() == keep && !before(x, id, top.back().second, top.back().first)) continue;
    size_t pos = top.size();
    while (pos > 0 && before(x, id, top[pos - 1].second, top[pos - 1].first)) --pos;
    top.insert(top.begin() + static_cast<ptrdiff_t>(pos), {id, x});
    if (top.size() > keep) top.pop_back();
  }
  for (auto& [id, value] : top) value = raw.logprob(value);
  return top;
}

int32_t argmax(std::span<const float> z) {
  const float max = max_of(z);
  return static_cast<int32_t>(std::find(z.begin(), z.end(), max) - z.begin());
}

// The first bin at which the cumulative `value` (mass or count) reaches `target`; the last bin if rounding
// leaves it short.
template <typename T>
size_t bin_reaching(const std::array<T, kBins>& value, double target) {
  double cum = 0.0;
  for (size_t b = 0; b < kBins; ++b) {
    cum += static_cast<double>(value[b]);
    if (cum >= target) return b;
  }
  return kBins - 1;
}

// min-p: zeroes the weights below min_p (the largest weight is 1, so they are the tokens whose probability is
// below min_p times the largest) and returns the sum of the others, in sum_exp's order.
double drop_below(std::span<float> weights, float min_p) {
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] < min_p) weights[i] = 0.0f;
    s[i % 4] += weights[i];
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// `weights` holds exp(z - max(z)) on entry when `weights_are_t1` (T = 1, z = raw logits) with `t1_total`
// their sum; otherwise it is scratch and is overwritten with the weights of temperature T.
int32_t draw(std::span<const float> z, const SamplingParams& p, uint64_t step, std::span<float> weights,
             bool weights_are_t1, double t1_total) {
  double total = t1_total;
  if (!(weights_are_t1 && p.temperature == 1.0f)) total = sum_exp(z, max_of(z), 1.0f / p.temperature, weights);
  if (p.min_p > 0.0f) total = drop_below(weights, p.min_p);
  thread_local Histogram hist;
  fill_histogram(weights, hist);
  // The maximum has weight exp(0) = 1, so at least one token can be drawn.
  TESSERA_CHECK(hist.n_positive > 0 && total > 0.0);
  const double u = philox::sampling_uniform(p.seed, step, /*draw=*/0);

  thread_local std::vector<Candidate> c;
  bool complete;  // c holds every token the walks may visit, whatever rounding does
  if (p.top_k >= 1 && static_cast<size_t>(p.top_k) < hist.n_positive) {
    // top-k: every token of the bins before the k-th token's bin precedes it, so gathering up to that bin
    // and selecting k there selects the k first overall.
    const auto k = static_cast<size_t>(p.top_k);
    gather(z, weights, bin_reaching(hist.count, static_cast<double>(k)), c);
    std::nth_element(c.begin(), c.begin() + static_cast<ptrdiff_t>(k), c.end(), kBefore);
    c.resize(k);
    total = 0.0;
    for (const Candidate& x : c) total += x.weight;
    complete = true;
  } else {
    // The walks need at most the first `needed` mass: top_p of it, or u of it when top-p is off. One bin
    // more than the histogram says absorbs the rounding between its sums and the walk's.
    const double needed = (p.top_p < 1.0f ? static_cast<double>(p.top_p) : u) * total;
    const size_t last_bin = std::min(bin_reaching(hist.mass, needed) + 1, kBins - 1);
    gather(z, weights, last_bin, c);
    complete = c.size() == hist.n_positive;
  }

  for (;;) {
    SortedPrefix prefix(c);
    size_t n_kept = c.size();
    double kept_mass = total;
    bool short_of_target = false;
    if (p.top_p < 1.0f) {
      const WalkResult cut = walk(c, prefix, n_kept, static_cast<double>(p.top_p) * total, true);
      short_of_target = cut.index == n_kept;
      n_kept = std::min(cut.index + 1, n_kept);
      kept_mass = cut.mass;
    }
    // Below the kept mass (u < 1), so this walk stops inside the kept prefix when top-p has cut one.
    const WalkResult pick = walk(c, prefix, n_kept, u * kept_mass, false);
    short_of_target = short_of_target || pick.index == n_kept;
    if (!short_of_target || complete) return c[std::min(pick.index, n_kept - 1)].id;
    gather(z, weights, kBins - 1, c);  // rounding outran the margin bin: walk again over everything
    complete = true;
  }
}

}  // namespace

SampleResult sample(std::span<const float> logits, const SamplingParams& p, uint64_t step,
                    const std::unordered_map<int32_t, int32_t>& generated_counts) {
  static const SamplingLists kNone;
  return sample(logits, p, step, generated_counts, kNone);
}

SampleResult sample(std::span<const float> logits, const SamplingParams& p, uint64_t step,
                    const std::unordered_map<int32_t, int32_t>& generated_counts, const SamplingLists& lists) {
  p.validate();
  if (logits.empty()) throw Error("logits is empty: the vocabulary has no tokens");
  const auto V = static_cast<int64_t>(logits.size());
  lists.validate(V);
  thread_local std::vector<float> weights;  // [vocab]
  weights.resize(logits.size());
  const RawStats raw = raw_stats(logits, weights);

  SampleResult result;
  if (p.n_logprobs > 0) result.top_logprobs = top_logprobs(logits, p.n_logprobs, raw);

  for (const auto& [token, count] : generated_counts)
    TESSERA_CHECK_MSG(token >= 0 && token < V && count >= 0, "generated token " + std::to_string(token) + " x" +
                                                                 std::to_string(count) + " outside the vocabulary of " +
                                                                 std::to_string(logits.size()));
  // Steps 1–4 go to a copy, and only when one of them changes a logit; otherwise the raw logits are used as they
  // are. Each is an fp32 operation in sampler.h's order (the GPU sampler repeats them bit for bit).
  const bool mask = step < static_cast<uint64_t>(p.min_tokens) && !lists.stop_ids.empty();
  const bool repetition = p.repetition_penalty != 1.0f && (!lists.prompt_tokens.empty() || !generated_counts.empty());
  const bool additive = (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) && !generated_counts.empty();
  std::span<const float> z = logits;
  thread_local std::vector<float> processed;
  if (!lists.logit_bias.empty() || mask || repetition || additive) {
    processed.assign(logits.begin(), logits.end());
    for (const LogitBias& e : lists.logit_bias) processed[static_cast<size_t>(e.token)] += e.bias;
    if (repetition) {
      const float rp = p.repetition_penalty;
      auto repeat = [&](int32_t t) {
        float& x = processed[static_cast<size_t>(t)];
        x = x > 0.0f ? x / rp : x * rp;
      };
      for (int32_t t : lists.prompt_tokens) repeat(t);
      for (const auto& [token, count] : generated_counts)  // each token once: those not in the prompt
        if (count > 0 && !std::binary_search(lists.prompt_tokens.begin(), lists.prompt_tokens.end(), token))
          repeat(token);
    }
    if (additive) {
      for (const auto& [token, count] : generated_counts) {
        if (count == 0) continue;
        processed[static_cast<size_t>(token)] -= p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
      }
    }
    if (mask) {
      for (int32_t t : lists.stop_ids) processed[static_cast<size_t>(t)] = -INFINITY;
      if (max_of(processed) == -INFINITY)
        throw Error("min_tokens masks every token of the vocabulary: nothing can be sampled");
    }
    z = processed;
  }

  if (p.greedy()) {
    result.token = z.data() == logits.data() ? raw.argmax : argmax(z);
  } else {
    result.token = draw(z, p, step, weights, /*weights_are_t1=*/z.data() == logits.data(), raw.sum);
  }
  result.logprob = raw.logprob(logits[static_cast<size_t>(result.token)]);
  return result;
}

}  // namespace tessera::sampler
