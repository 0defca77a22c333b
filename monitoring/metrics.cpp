// monitoring/metrics.cpp — the families behind monitoring/metrics.h, on one prometheus-cpp Registry.
#include "monitoring/metrics.h"

#include "monitoring/process_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace tessera::monitoring {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using Buckets = Histogram::BucketBoundaries;

// vLLM's edges (vllm/v1/metrics/loggers.py), so its dashboards and autoscaling recipes carry over.
const Buckets kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                              1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const Buckets kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                             0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const Buckets kRequestLatencyBuckets = {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                        30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const Buckets kIterationTokenBuckets = {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
// HTTP request durations: 1 ms (a /health) to 10 min (a long stream).
const Buckets kHttpBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,   0.25,  0.5,  1.0,
                              2.5,   5.0,    10.0,  20.0, 40.0,  80.0, 160.0, 320.0, 600.0};
// Ours (vLLM has no per-rank timings): 10 µs to 10 s, 1-2.5-5 steps.
const Buckets kRankTimeBuckets = {1e-5,  2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01,
                                  0.025, 0.05,   0.1,  0.25, 0.5,    1.0,  2.5,  5.0,    10.0};

// vLLM's build_1_2_5_buckets(max): 1, 2, 5, 10, 20, 50, ... up to max.
Buckets buckets_1_2_5(int64_t max_value) {
  Buckets b;
  for (int64_t scale = 1;; scale *= 10) {
    for (int64_t m : {1, 2, 5}) {
      if (m * scale > max_value) return b;
      b.push_back(static_cast<double>(m * scale));
    }
  }
}

constexpr size_t kMaxHttpSeries = 256;  // a bound on {route, status} pairs, against unbounded label values

}  // namespace

struct Metrics::Impl {
  std::string model_name;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Labels base;

  Gauge* running = nullptr;
  Gauge* waiting = nullptr;
  Gauge* kv_usage = nullptr;
  Gauge* ready = nullptr;
  Counter* prompt_tokens = nullptr;
  Counter* generation_tokens = nullptr;
  Counter* prefix_cache_queries = nullptr;
  Counter* prefix_cache_hits = nullptr;
  Counter* preemptions = nullptr;
  std::map<std::string, Counter*> finished;  // fixed set of reasons, made up front
  Histogram* ttft = nullptr;
  Histogram* itl = nullptr;
  Histogram* e2e = nullptr;
  Histogram* queue_time = nullptr;
  Histogram* prefill_time = nullptr;
  Histogram* decode_time = nullptr;
  Histogram* prompt_len = nullptr;
  Histogram* generation_len = nullptr;
  Histogram* tokens_per_step = nullptr;
  Histogram* padding = nullptr;
  Family<Histogram>* rank_step = nullptr;
  Family<Histogram>* allreduce = nullptr;
  Family<Counter>* http = nullptr;
  Family<Histogram>* http_duration = nullptr;

  // Children created on first use (per rank, per route/status). prometheus-cpp's Family::Add locks and hashes
  // the labels on every call; this cache keeps the hot path to one map lookup.
  std::mutex mu;
  std::map<int, Histogram*> rank_step_by_rank, allreduce_by_rank;
  std::map<std::pair<std::string, int>, Counter*> http_by_key;
  std::map<std::string, Histogram*> http_duration_by_route;

  prometheus::Labels with(prometheus::Labels extra) const {
    extra.insert(base.begin(), base.end());
    return extra;
  }
  Gauge* gauge(const std::string& name, const std::string& help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry).Add(base);
  }
  Counter* counter(const std::string& name, const std::string& help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry).Add(base);
  }
  Histogram* histogram(const std::string& name, const std::string& help, const Buckets& buckets) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry).Add(base, buckets);
  }
  Histogram* rank_child(Family<Histogram>* family, std::map<int, Histogram*>& cache, int rank) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(rank);
    if (it != cache.end()) return it->second;
    Histogram* h = &family->Add(with({{"rank", std::to_string(rank)}}), kRankTimeBuckets);
    cache.emplace(rank, h);
    return h;
  }
};

Metrics::Metrics(std::string model_name, int64_t max_model_len) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.model_name = std::move(model_name);
  m.base = {{"model_name", m.model_name}};
  const Buckets len_buckets = buckets_1_2_5(std::max<int64_t>(max_model_len, 1));

  m.running = m.gauge("tessera_num_requests_running", "Number of requests in model execution batches.");
  m.waiting = m.gauge("tessera_num_requests_waiting", "Number of requests waiting to be processed.");
  m.kv_usage = m.gauge("tessera_kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.");
  m.ready = m.gauge("tessera_ready", "1 when the model is loaded, every rank answers and the server is not draining.");
  m.prompt_tokens = m.counter("tessera_prompt_tokens_total", "Number of prefill tokens processed.");
  m.generation_tokens = m.counter("tessera_generation_tokens_total", "Number of generation tokens processed.");
  m.prefix_cache_queries =
      m.counter("tessera_prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.");
  m.prefix_cache_hits =
      m.counter("tessera_prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.");
  m.preemptions = m.counter("tessera_num_preemptions_total", "Cumulative number of preemption from the engine.");

  auto& success = prometheus::BuildCounter()
                      .Name("tessera_request_success_total")
                      .Help("Count of finished sequences by finished_reason (stop, length, abort, error).")
                      .Register(*m.registry);
  for (const char* reason : {"stop", "length", "abort", "error"})
    m.finished[reason] = &success.Add(m.with({{"finished_reason", reason}}));

  m.ttft =
      m.histogram("tessera_time_to_first_token_seconds", "Histogram of time to first token in seconds.", kTtftBuckets);
  m.itl =
      m.histogram("tessera_inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", kItlBuckets);
  m.e2e = m.histogram("tessera_e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                      kRequestLatencyBuckets);
  m.queue_time = m.histogram("tessera_request_queue_time_seconds",
                             "Histogram of time spent in WAITING phase for request.", kRequestLatencyBuckets);
  m.prefill_time = m.histogram("tessera_request_prefill_time_seconds",
                               "Histogram of time spent in PREFILL phase for request.", kRequestLatencyBuckets);
  m.decode_time = m.histogram("tessera_request_decode_time_seconds",
                              "Histogram of time spent in DECODE phase for request.", kRequestLatencyBuckets);
  m.prompt_len = m.histogram("tessera_request_prompt_tokens", "Number of prefill tokens processed.", len_buckets);
  m.generation_len =
      m.histogram("tessera_request_generation_tokens", "Number of generation tokens processed.", len_buckets);
  m.tokens_per_step =
      m.histogram("tessera_iteration_tokens", "Histogram of number of tokens per engine step.", kIterationTokenBuckets);
  m.padding = m.histogram("tessera_prefill_padding_tokens",
                          "Pad tokens of one pre-padded prefill group (sum over rows of max length - row length).",
                          buckets_1_2_5(1 << 20));
  m.rank_step = &prometheus::BuildHistogram()
                     .Name("tessera_rank_step_seconds")
                     .Help("Time one tensor-parallel rank spent in one step, in seconds.")
                     .Register(*m.registry);
  m.allreduce = &prometheus::BuildHistogram()
                     .Name("tessera_allreduce_seconds")
                     .Help("Time one tensor-parallel rank spent in all-reduces during one step, in seconds.")
                     .Register(*m.registry);
  m.http = &prometheus::BuildCounter()
                .Name("tessera_http_requests_total")
                .Help("HTTP requests answered, by route and status code.")
                .Register(*m.registry);
  m.http_duration = &prometheus::BuildHistogram()
                         .Name("tessera_http_request_duration_seconds")
                         .Help("Time from an HTTP request's arrival to the end of its answer, by route, in seconds.")
                         .Register(*m.registry);
}

Metrics::~Metrics() = default;

std::string Metrics::exposition() const {
  std::vector<prometheus::MetricFamily> families = impl_->registry->Collect();
  for (auto& f : process_metric_families()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

const std::string& Metrics::model_name() const { return impl_->model_name; }

void Metrics::set_running(int64_t n) { impl_->running->Set(static_cast<double>(n)); }
void Metrics::set_waiting(int64_t n) { impl_->waiting->Set(static_cast<double>(n)); }
void Metrics::set_kv_usage(double fraction) { impl_->kv_usage->Set(fraction); }
void Metrics::set_ready(bool ready) { impl_->ready->Set(ready ? 1.0 : 0.0); }

void Metrics::add_prompt_tokens(int64_t n) {
  if (n > 0) impl_->prompt_tokens->Increment(static_cast<double>(n));
}
void Metrics::add_prefix_cache_queries(int64_t n) {
  if (n > 0) impl_->prefix_cache_queries->Increment(static_cast<double>(n));
}
void Metrics::add_prefix_cache_hits(int64_t n) {
  if (n > 0) impl_->prefix_cache_hits->Increment(static_cast<double>(n));
}
void Metrics::count_preemption() { impl_->preemptions->Increment(); }
void Metrics::add_generation_tokens(int64_t n) {
  if (n > 0) impl_->generation_tokens->Increment(static_cast<double>(n));
}

void Metrics::request_finished(const std::string& reason) {
  auto it = impl_->finished.find(reason);
  (it != impl_->finished.end() ? it->second : impl_->finished.at("error"))->Increment();
}

void Metrics::observe_ttft(double s) { impl_->ttft->Observe(s); }
void Metrics::observe_itl(double s) { impl_->itl->Observe(s); }
void Metrics::observe_e2e(double s) { impl_->e2e->Observe(s); }
void Metrics::observe_queue_time(double s) { impl_->queue_time->Observe(s); }
void Metrics::observe_prefill_time(double s) { impl_->prefill_time->Observe(s); }
void Metrics::observe_decode_time(double s) { impl_->decode_time->Observe(s); }
void Metrics::observe_prompt_len(int64_t n) { impl_->prompt_len->Observe(static_cast<double>(n)); }
void Metrics::observe_generation_len(int64_t n) { impl_->generation_len->Observe(static_cast<double>(n)); }
void Metrics::observe_tokens_per_step(int64_t n) { impl_->tokens_per_step->Observe(static_cast<double>(n)); }
void Metrics::observe_padding_tokens(int64_t n) { impl_->padding->Observe(static_cast<double>(n)); }

void Metrics::observe_rank_step_time(int rank, double s) {
  impl_->rank_child(impl_->rank_step, impl_->rank_step_by_rank, rank)->Observe(s);
}
void Metrics::observe_allreduce_time(int rank, double s) {
  impl_->rank_child(impl_->allreduce, impl_->allreduce_by_rank, rank)->Observe(s);
}

void Metrics::count_http_request(const std::string& route, int status) {
  Impl& m = *impl_;
  Counter* c = nullptr;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    auto key = std::make_pair(route, status);
    // Past the bound, unseen pairs are counted as route "other": a client probing random paths must not grow
    // the exposition without limit (the HTTP layer should pass route templates, not raw targets).
    if (m.http_by_key.size() >= kMaxHttpSeries && !m.http_by_key.count(key)) key.first = "other";
    auto it = m.http_by_key.find(key);
    if (it == m.http_by_key.end()) {
      c = &m.http->Add(m.with({{"route", key.first}, {"status", std::to_string(key.second)}}));
      m.http_by_key.emplace(key, c);
    } else {
      c = it->second;
    }
  }
  c->Increment();
}

void Metrics::observe_http_duration(const std::string& route, double s) {
  Impl& m = *impl_;
  Histogram* h = nullptr;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    // Routes are the api's fixed paths and "other"; the bound is a backstop, as for the counter above.
    const std::string key = m.http_duration_by_route.size() >= kMaxHttpSeries && !m.http_duration_by_route.count(route)
                                ? std::string("other")
                                : route;
    auto it = m.http_duration_by_route.find(key);
    if (it == m.http_duration_by_route.end())
      it = m.http_duration_by_route.emplace(key, &m.http_duration->Add(m.with({{"route", key}}), kHttpBuckets)).first;
    h = it->second;
  }
  h->Observe(s);
}

}  // namespace tessera::monitoring
