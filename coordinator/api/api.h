// coordinator/api/api.h — the OpenAI-compatible routes: HTTP request in, Requests to the scheduler, answer out.
//
// Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, POST /tokenize, POST /detokenize,
// GET /health, GET /ready, GET /metrics. Api::handle is the ex_wrapper: every failure of every route ends in
// errors.h's to_response(), the one place that picks HTTP codes (unknown route 404, wrong method 405, API key
// 401, body too large 413, bad JSON or field 400, unknown model 404, queue full 429, draining 503, bug 500; and
// for a request the HTTP layer could not read, its status: 400, 408, 413, 415, 431, 501, 505).
// With an api_key, every route but options.public_routes needs `Authorization: Bearer <key>` (the scheme in any
// case, RFC 7235).
// Completions are handed to the scheduler through `submit` (Scheduler::submit in `tessera serve`); their
// tokens come back through a stream::CompletionJob, which answers the client.
// Thread-safety: handle() runs on any HTTP pool thread, concurrently; set_ready/begin_drain from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/api/openai_request.h"
#include "coordinator/http/server.h"
#include "coordinator/request.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace tessera::monitoring {
class Metrics;
}

namespace tessera::coordinator::stream {
struct JobSummary;
}

namespace tessera::coordinator::api {

struct ApiOptions {
  ApiLimits limits;
  std::string api_key;  // "" → no authentication
  // The routes that answer without the key when api_key is set (vLLM's choice: probes and scrapers carry none).
  std::vector<std::string> public_routes = {"/health", "/ready", "/metrics", "/version"};
  double request_timeout_s = 600;                       // per-request deadline (the scheduler aborts it)
  int retry_after_s = 1;                                // Retry-After of 429 / 503
  bool serve_metrics = true;                            // metrics.enabled: GET /metrics answers (else 404)
  std::string version = "unknown", commit = "unknown";  // GET /version
};

using SubmitFn = std::function<SubmitStatus(std::shared_ptr<Request>, std::string* why)>;

class Api {
 public:
  // `tokenizer` may be null (token-id prompts only); `metrics` may be null. Both must outlive the Api.
  Api(ApiOptions options, const tokenizer::Tokenizer* tokenizer, SubmitFn submit, monitoring::Metrics* metrics);

  void handle(http::HttpRequest request, std::shared_ptr<http::Exchange> exchange);
  http::Handler handler() {
    return [this](http::HttpRequest r, std::shared_ptr<http::Exchange> ex) { handle(std::move(r), std::move(ex)); };
  }

  void set_ready(bool ready);         // GET /ready; the scheduler is running and the cluster answers
  void begin_drain();                 // SIGTERM: /ready 503, new completions 503 + Retry-After
  void fail(const std::string& why);  // the cluster failed (a rank died): /ready 503 naming why, for good
  bool draining() const { return draining_.load(); }

 private:
  void completions(const http::HttpRequest& req, const std::shared_ptr<http::Exchange>& ex, SteadyClock::time_point t0,
                   bool chat, const std::string& route);
  http::HttpResponse tokenize(const std::string& body) const;
  http::HttpResponse detokenize(const std::string& body) const;
  http::HttpResponse models() const;
  void count(const std::string& route, int status) const;
  // The access log: one info line per request when it is answered (a completion when its last token is out),
  // and its duration into the HTTP histogram.
  void access_log(const std::string& route, const http::HttpRequest& req, int status, SteadyClock::time_point t0,
                  const std::string& id, const stream::JobSummary* job) const;

  ApiOptions options_;
  const tokenizer::Tokenizer* tokenizer_;
  SubmitFn submit_;
  monitoring::Metrics* metrics_;
  std::atomic<bool> ready_{false}, draining_{false}, failed_{false};
  mutable std::mutex failure_mu_;  // guards failure_
  std::string failure_;
  std::atomic<uint64_t> next_id_{1};
  int64_t created_;
};

}  // namespace tessera::coordinator::api
