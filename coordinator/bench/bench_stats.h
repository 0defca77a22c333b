// coordinator/bench/bench_stats.h — the arithmetic of `tessera bench serve`, kept pure so it is testable.
//
// Follows vLLM's benchmarks/benchmark_serving.py: arrivals are a Poisson process at a rate (gamma-distributed
// gaps with shape = burstiness, so burstiness 1 is Poisson, < 1 burstier, > 1 more uniform) or all at once;
// per request it keeps TTFT, the inter-token latencies (ITL, one per streamed chunk after the first), the
// end-to-end latency and the output length; TPOT = (E2E - TTFT) / (output tokens - 1); goodput counts the
// requests that meet every given SLO (ttft, tpot, e2el, in ms). Percentiles interpolate linearly between
// order statistics, as numpy.percentile does.
// Thread-safety: pure functions over values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tessera::bench {

// Send times (seconds after the start) of n requests: gaps ~ Gamma(shape = burstiness, scale = 1 / (rate ·
// burstiness)), the first at 0. rate = +inf → all at 0. Deterministic for a seed.
std::vector<double> arrival_times(int64_t n, double request_rate, double burstiness, uint64_t seed);

// numpy.percentile(values, p) with linear interpolation; p in [0, 100]. 0 for no values.
double percentile(std::vector<double> values, double p);
double mean(const std::vector<double>& values);
double stddev(const std::vector<double>& values);  // population (numpy.std)

struct RequestOutcome {
  bool success = false;
  double ttft_s = 0;          // send → first chunk with a choice
  double latency_s = 0;       // send → end of the response
  std::vector<double> itl_s;  // gaps between successive chunks
  int64_t prompt_len = 0;     // the server's usage.prompt_tokens when it sent one, else what we sent
  int64_t output_tokens = 0;  // usage.completion_tokens when sent, else the number of chunks
  std::string error;
};

// SLOs for goodput, in milliseconds; unset = not checked.
struct GoodputSlo {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2el_ms; }
};
// Parses {"ttft:500", "tpot:50"}; throws tessera::Error on an unknown metric or a value that is not > 0.
GoodputSlo parse_goodput(const std::vector<std::string>& items);

struct Distribution {  // milliseconds
  double mean = 0, median = 0, std = 0;
  std::vector<std::pair<double, double>> percentiles;  // (p, value)
};
Distribution distribution_ms(const std::vector<double>& seconds, const std::vector<double>& percentiles);

struct BenchMetrics {
  int64_t completed = 0, failed = 0;
  int64_t total_input = 0, total_output = 0;
  double duration_s = 0;
  double request_throughput = 0, request_goodput = 0, output_throughput = 0, total_token_throughput = 0;
  Distribution ttft, tpot, itl, e2el;
};

BenchMetrics compute_metrics(const std::vector<RequestOutcome>& outcomes, double duration_s, const GoodputSlo& slo,
                             const std::vector<double>& percentiles);

// vLLM's result table ("==== Serving Benchmark Result ====", 50 columns).
std::string format_table(const BenchMetrics& m, const GoodputSlo& slo);

// The JSON fields of vLLM's --save-result (mean_ttft_ms, median_ttft_ms, p99_ttft_ms, ...), without the
// per-request arrays (the caller adds those).
nlohmann::json metrics_json(const BenchMetrics& m);

}  // namespace tessera::bench
