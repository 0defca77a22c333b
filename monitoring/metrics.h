// monitoring/metrics.h — every metric family the coordinator exports, defined in one place.
//
// In: observations from the scheduler thread (step and request timings, token counts, queue depth) and from
// the HTTP threads (requests by route and status, readiness).  Out: the Prometheus text exposition that
// GET /metrics returns.  Names follow vLLM's (`vllm:x` → `tessera_x`), every series carries the label
// model_name, and the histogram bucket edges are vLLM's, so its dashboards and autoscaling recipes carry over.
// All times are seconds on the coordinator's monotonic clock; the caller measures them.
//
// Thread-safety: every method may be called from any thread at any time (prometheus-cpp's counters and
// gauges are atomic, its histograms and families lock). exposition() takes a consistent-enough snapshot:
// each series is read atomically, the families one after another.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace tessera::monitoring {

class Metrics {
 public:
  // max_model_len bounds the 1-2-5 buckets of the prompt/generation length histograms, as in vLLM.
  explicit Metrics(std::string model_name, int64_t max_model_len = 131072);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Prometheus text format 0.0.4 (prometheus::TextSerializer): the families below, then the standard process_*
  // ones (CPU seconds, resident memory, open file descriptors, ...) read from /proc at this call.
  std::string exposition() const;
  const std::string& model_name() const;

  // Scheduler state (gauges), set after every step.
  void set_running(int64_t n);
  void set_waiting(int64_t n);
  void set_kv_usage(double fraction);  // 0..1

  // Token counters.
  void add_prompt_tokens(int64_t n);
  void add_generation_tokens(int64_t n);
  // Prefix caching (vLLM's names, counted in tokens): prompt tokens looked up, and those found cached.
  void add_prefix_cache_queries(int64_t n);
  void add_prefix_cache_hits(int64_t n);
  // A running sequence preempted for KV blocks (its KV freed, recomputed when it resumes).
  void count_preemption();

  // Once per finished sequence: stop | length | abort | error (anything else counts as "error").
  void request_finished(const std::string& reason);

  // Per-request timings (seconds).
  void observe_ttft(double s);
  void observe_itl(double s);  // one per generated token after the first
  void observe_e2e(double s);
  void observe_queue_time(double s);
  void observe_prefill_time(double s);
  void observe_decode_time(double s);

  // Per-request and per-step sizes.
  void observe_prompt_len(int64_t n);
  void observe_generation_len(int64_t n);
  void observe_tokens_per_step(int64_t n);
  void observe_padding_tokens(int64_t n);  // pad tokens of one prefill group

  // Per tensor-parallel rank (0..TP-1), as reported by the workers.
  void observe_rank_step_time(int rank, double s);
  void observe_allreduce_time(int rank, double s);

  void set_ready(bool ready);
  void count_http_request(const std::string& route, int status);
  // From the request's arrival to its answer's last byte handed to the socket (a stream: its [DONE]).
  void observe_http_duration(const std::string& route, double s);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::monitoring
