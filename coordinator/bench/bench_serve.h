// coordinator/bench/bench_serve.h — `tessera bench serve`: a load generator for an OpenAI-compatible server,
// following vLLM's benchmarks/benchmark_serving.py (see bench_stats.h for the method).
//
// In: a server address, an endpoint (/v1/completions or /v1/chat/completions), prompts (random token ids of a
// set length, or a JSONL dataset), output lengths, an arrival process and a concurrency limit.
// Out: vLLM's result table on stdout, optionally the same numbers (plus per-request arrays) as JSON.
// Every request streams (SSE, stream_options.include_usage) so TTFT and ITL are measured on the client side,
// on one steady clock; requests use their own HTTP/1.1 connection (Boost.Beast, one thread per request in flight).
// Thread-safety: run_bench_serve is re-entrant; it owns every thread it starts and joins them before returning.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace tessera::bench {

struct BenchServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string endpoint = "/v1/completions";                       // or /v1/chat/completions (text prompts only)
  std::string model;                                              // "" → the first id of GET /v1/models
  std::string api_key;                                            // sent as "Authorization: Bearer ..." when set
  double request_rate = std::numeric_limits<double>::infinity();  // requests/s; inf = all at once
  double burstiness = 1.0;                                        // gamma shape of the gaps; 1 = Poisson
  int max_concurrency = 0;                                        // 0 = no limit
  int num_prompts = 100;
  int random_input_len = 128;       // tokens per random prompt
  int random_output_len = 32;       // max_tokens of each request (exact with ignore_eos)
  int random_vocab = 256;           // random prompt ids are drawn from [min(32, vocab / 2), vocab)
  int random_prefix_len = 0;        // a random prefix of this many tokens shared by every random prompt (vLLM's)
  double random_range_ratio = 0.0;  // input lengths uniform in [len · (1 − r), len · (1 + r)], r in [0, 1)
  std::string dataset;              // JSONL: {"prompt": "..." | [ids], "output_len": n}, or "..." per line
  uint64_t seed = 0;
  bool ignore_eos = false;
  double temperature = 0.0;
  std::vector<std::string> goodput;        // "ttft:500", "tpot:50", "e2el:2000" (ms)
  std::vector<double> percentiles = {99};  // printed besides mean and median (vLLM's --metric-percentiles)
  double timeout_s = 600;                  // per request
  bool health_probe = false;               // also hammer GET /health on one keep-alive connection, report req/s
  bool warmup = true;                      // one request before the run (vLLM's "initial test run")
  std::string output_json;                 // "" = no file
};

// Runs the benchmark; returns 0 when at least one request succeeded, 1 when all failed; throws tessera::Error
// for bad options (unreadable dataset, unknown --goodput metric, server unreachable for the warm-up).
int run_bench_serve(const BenchServeOptions& options);

}  // namespace tessera::bench
