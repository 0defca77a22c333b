// coordinator/bench/bench_serve_cli.h — the command-line options of `tessera bench serve` (CLI11), kept
// next to the options struct so app/main.cpp only registers the subcommand. Header-only: the app target
// already has CLI11.
#pragma once

#include <CLI/CLI.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "coordinator/bench/bench_serve.h"

namespace tessera::bench {

// Adds the options to `cmd`; the request rate is kept as text in *rate_text ("inf" or a number) and parsed by
// finish_bench_serve_options after CLI11 has run.
inline void add_bench_serve_options(CLI::App& cmd, BenchServeOptions& o, std::string& rate_text) {
  cmd.add_option("--host", o.host, "server address");
  cmd.add_option("--port", o.port, "server port")->check(CLI::Range(1, 65535));
  cmd.add_option("--endpoint", o.endpoint, "/v1/completions or /v1/chat/completions")
      ->check(CLI::IsMember({"/v1/completions", "/v1/chat/completions"}));
  cmd.add_option("--model", o.model, "model id to send (default: the first of GET /v1/models)");
  cmd.add_option("--api-key", o.api_key, "sent as Authorization: Bearer ...");
  cmd.add_option("--request-rate", rate_text, "requests per second, or inf to send all at once")->default_str("inf");
  cmd.add_option("--burstiness", o.burstiness, "gamma shape of arrival gaps: 1 = Poisson, <1 burstier, >1 steadier")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--max-concurrency", o.max_concurrency, "requests in flight at most (0 = no limit)")
      ->check(CLI::Range(0, 1 << 20));
  cmd.add_option("--num-prompts", o.num_prompts, "requests to send")->check(CLI::Range(1, 1 << 24));
  cmd.add_option("--random-input-len", o.random_input_len, "tokens per random prompt")->check(CLI::Range(1, 1 << 24));
  cmd.add_option("--random-output-len", o.random_output_len, "max_tokens per request")->check(CLI::Range(1, 1 << 24));
  cmd.add_option("--random-vocab", o.random_vocab, "random prompt ids come from [min(32, V/2), V)")
      ->check(CLI::Range(2, 1 << 24));
  cmd.add_option("--random-prefix-len", o.random_prefix_len,
                 "a random prefix of this many tokens before every random prompt, the same for all (prefix caching)")
      ->check(CLI::Range(0, 1 << 24));
  cmd.add_option("--random-range-ratio", o.random_range_ratio, "random input lengths uniform in [len·(1−r), len·(1+r)]")
      ->check(CLI::Range(0.0, 0.999));
  cmd.add_option("--dataset", o.dataset, "JSONL of prompts: \"text\" or {\"prompt\": text|[ids], \"output_len\": n}");
  cmd.add_option("--seed", o.seed, "seed of the prompts and the arrival times");
  cmd.add_flag("--ignore-eos", o.ignore_eos, "generate exactly max_tokens (ignore_eos in each request)");
  cmd.add_option("--temperature", o.temperature, "sampling temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
  cmd.add_option("--goodput", o.goodput, "SLOs in ms for goodput, e.g. --goodput ttft:500 tpot:50 (ttft|tpot|e2el)");
  cmd.add_option("--metric-percentiles", o.percentiles, "percentiles to report besides mean and median")
      ->check(CLI::Range(0.0, 100.0));
  cmd.add_option("--timeout", o.timeout_s, "seconds one request may take")->check(CLI::PositiveNumber);
  cmd.add_flag("--health-probe", o.health_probe, "also measure GET /health requests per second under the load");
  cmd.add_flag("!--no-warmup", o.warmup, "skip the initial single request");
  cmd.add_option("--output-json", o.output_json, "write the results (and per-request arrays) to this file");
}

// Parses the rate text; throws CLI::ValidationError-free tessera-style messages via std::invalid_argument.
inline double parse_request_rate(const std::string& text) {
  if (text.empty() || text == "inf" || text == "Inf" || text == "INF") return std::numeric_limits<double>::infinity();
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !(v > 0))
    throw std::invalid_argument("--request-rate: expected inf or a number > 0, got '" + text + "'");
  return v;
}

}  // namespace tessera::bench
