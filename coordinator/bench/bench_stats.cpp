// coordinator/bench/bench_stats.cpp — arrivals, percentiles, goodput and the result table of bench serve.
#include "coordinator/bench/bench_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <string_view>

#include "common/check.h"

namespace tessera::bench {

std::vector<double> arrival_times(int64_t n, double request_rate, double burstiness, uint64_t seed) {
  TESSERA_CHECK(n >= 0 && request_rate > 0 && burstiness > 0);
  std::vector<double> t(static_cast<size_t>(n), 0.0);
  if (std::isinf(request_rate)) return t;
  std::mt19937_64 rng(seed);
  std::gamma_distribution<double> gap(burstiness, 1.0 / (request_rate * burstiness));
  for (size_t i = 1; i < t.size(); ++i) t[i] = t[i - 1] + gap(rng);
  return t;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double stddev(const std::vector<double>& v) {
  if (v.empty()) return 0.0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

GoodputSlo parse_goodput(const std::vector<std::string>& items) {
  GoodputSlo slo;
  for (const auto& item : items) {
    const size_t colon = item.find(':');
    const std::string name = item.substr(0, colon);
    double v = 0;
    try {
      size_t used = 0;
      if (colon == std::string::npos) throw std::invalid_argument("no value");
      v = std::stod(item.substr(colon + 1), &used);
      if (used != item.size() - colon - 1) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw Error("--goodput: expected metric:milliseconds (e.g. ttft:500), got '" + item + "'");
    }
    if (!(v > 0)) throw Error("--goodput: " + name + " must be > 0 ms, got '" + item + "'");
    if (name == "ttft") {
      slo.ttft_ms = v;
    } else if (name == "tpot") {
      slo.tpot_ms = v;
    } else if (name == "e2el") {
      slo.e2el_ms = v;
    } else {
      throw Error("--goodput: unknown metric '" + name + "' (ttft, tpot or e2el)");
    }
  }
  return slo;
}

Distribution distribution_ms(const std::vector<double>& seconds, const std::vector<double>& percentiles) {
  Distribution d;
  d.mean = mean(seconds) * 1000;
  d.median = percentile(seconds, 50) * 1000;
  d.std = stddev(seconds) * 1000;
  for (double p : percentiles) d.percentiles.push_back({p, percentile(seconds, p) * 1000});
  return d;
}

BenchMetrics compute_metrics(const std::vector<RequestOutcome>& outcomes, double duration_s, const GoodputSlo& slo,
                             const std::vector<double>& percentiles) {
  BenchMetrics m;
  m.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  int64_t good = 0;
  for (const auto& o : outcomes) {
    if (!o.success) {
      ++m.failed;
      continue;
    }
    ++m.completed;
    m.total_input += o.prompt_len;
    m.total_output += o.output_tokens;
    double tpot = 0;  // a one-token answer has no TPOT; vLLM counts it as 0 for goodput
    if (o.output_tokens > 1) {
      tpot = (o.latency_s - o.ttft_s) / static_cast<double>(o.output_tokens - 1);
      tpots.push_back(tpot);
    }
    itls.insert(itls.end(), o.itl_s.begin(), o.itl_s.end());
    ttfts.push_back(o.ttft_s);
    e2els.push_back(o.latency_s);
    if (!slo.empty()) {
      const bool ok = (!slo.ttft_ms || o.ttft_s * 1000 <= *slo.ttft_ms) &&
                      (!slo.tpot_ms || tpot * 1000 <= *slo.tpot_ms) &&
                      (!slo.e2el_ms || o.latency_s * 1000 <= *slo.e2el_ms);
      good += ok ? 1 : 0;
    }
  }
  const double d = duration_s > 0 ? duration_s : std::numeric_limits<double>::infinity();
  m.request_throughput = m.completed / d;
  m.request_goodput = good / d;
  m.output_throughput = m.total_output / d;
  m.total_token_throughput = (m.total_input + m.total_output) / d;
  m.ttft = distribution_ms(ttfts, percentiles);
  m.tpot = distribution_ms(tpots, percentiles);
  m.itl = distribution_ms(itls, percentiles);
  m.e2el = distribution_ms(e2els, percentiles);
  return m;
}

namespace {

std::string banner(const std::string& title, char fill) {
  const size_t n = 50;
  if (title.size() >= n) return title + "\n";
  const size_t left = (n - title.size()) / 2;
  return std::string(left, fill) + title + std::string(n - title.size() - left, fill) + "\n";
}

std::string row(const std::string& label, const std::string& value) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-40s %-10s\n", label.c_str(), value.c_str());
  return buf;
}

std::string fixed(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// Concatenation without operator+ chains (g++ 12 warns -Wrestrict on those at -O3, a known false positive).
std::string cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (auto p : parts) s.append(p);
  return s;
}

std::string pct_name(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", p);
  return buf;
}

}  // namespace

std::string format_table(const BenchMetrics& m, const GoodputSlo& slo) {
  std::string s = banner(" Serving Benchmark Result ", '=');
  s += row("Successful requests:", std::to_string(m.completed));
  if (m.failed > 0) s += row("Failed requests:", std::to_string(m.failed));
  s += row("Benchmark duration (s):", fixed(m.duration_s));
  s += row("Total input tokens:", std::to_string(m.total_input));
  s += row("Total generated tokens:", std::to_string(m.total_output));
  s += row("Request throughput (req/s):", fixed(m.request_throughput));
  if (!slo.empty()) s += row("Request goodput (req/s):", fixed(m.request_goodput));
  s += row("Output token throughput (tok/s):", fixed(m.output_throughput));
  s += row("Total Token throughput (tok/s):", fixed(m.total_token_throughput));
  auto section = [&](const std::string& title, const std::string& key, const Distribution& d) {
    s += banner(title, '-');
    s += row(cat({"Mean ", key, " (ms):"}), fixed(d.mean));
    s += row(cat({"Median ", key, " (ms):"}), fixed(d.median));
    for (const auto& [p, v] : d.percentiles) s += row(cat({"P", pct_name(p), " ", key, " (ms):"}), fixed(v));
  };
  section("Time to First Token", "TTFT", m.ttft);
  section("Time per Output Token (excl. 1st token)", "TPOT", m.tpot);
  section("Inter-token Latency", "ITL", m.itl);
  section("End-to-end Latency", "E2EL", m.e2el);
  s += std::string(50, '=') + "\n";
  return s;
}

nlohmann::json metrics_json(const BenchMetrics& m) {
  nlohmann::json j = {
      {"duration", m.duration_s},
      {"completed", m.completed},
      {"failed", m.failed},
      {"total_input_tokens", m.total_input},
      {"total_output_tokens", m.total_output},
      {"request_throughput", m.request_throughput},
      {"request_goodput", m.request_goodput},
      {"output_throughput", m.output_throughput},
      {"total_token_throughput", m.total_token_throughput},
  };
  auto put = [&](const std::string& key, const Distribution& d) {
    j[cat({"mean_", key, "_ms"})] = d.mean;
    j[cat({"median_", key, "_ms"})] = d.median;
    j[cat({"std_", key, "_ms"})] = d.std;
    for (const auto& [p, v] : d.percentiles) j[cat({"p", pct_name(p), "_", key, "_ms"})] = v;
  };
  put("ttft", m.ttft);
  put("tpot", m.tpot);
  put("itl", m.itl);
  put("e2el", m.e2el);
  return j;
}

}  // namespace tessera::bench
