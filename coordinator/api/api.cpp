// coordinator/api/api.cpp — routing, authentication, and the ex_wrapper around every route.
#include "coordinator/api/api.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <random>

#include "common/check.h"
#include "coordinator/api/errors.h"
#include "coordinator/stream/completion_stream.h"
#include "monitoring/log_format.h"
#include "monitoring/metrics.h"

namespace tessera::coordinator::api {
namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

http::HttpResponse json_response(const json& j, int status = 200) { return {status, "application/json", dump(j), {}}; }

// RFC 7235: the scheme is case-insensitive, then one or more spaces, then the credentials.
bool bearer_matches(std::string_view header, const std::string& key) {
  constexpr std::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return false;
  header.remove_prefix(kScheme.size());
  if (header.front() != ' ') return false;
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  while (!header.empty() && header.back() == ' ') header.remove_suffix(1);
  return header == key;
}

std::string random_hex() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

struct Route {
  const char* path;
  const char* method;
};
constexpr Route kRoutes[] = {{"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
                             {"/v1/models", "GET"},       {"/tokenize", "POST"},
                             {"/detokenize", "POST"},     {"/health", "GET"},
                             {"/ready", "GET"},           {"/metrics", "GET"},
                             {"/version", "GET"}};

}  // namespace

Api::Api(ApiOptions options, const tokenizer::Tokenizer* tokenizer, SubmitFn submit, monitoring::Metrics* metrics)
    : options_(std::move(options)),
      tokenizer_(tokenizer),
      submit_(std::move(submit)),
      metrics_(metrics),
      created_(static_cast<int64_t>(std::time(nullptr))) {}

void Api::set_ready(bool ready) {
  ready_.store(ready);
  if (metrics_) metrics_->set_ready(ready && !draining_.load());
}

void Api::fail(const std::string& why) {
  {
    std::lock_guard lock(failure_mu_);
    failure_ = why;
  }
  failed_.store(true);
  set_ready(false);
}

void Api::begin_drain() {
  draining_.store(true);
  if (metrics_) metrics_->set_ready(false);
}

void Api::count(const std::string& route, int status) const {
  if (metrics_) metrics_->count_http_request(route, status);
}

// A client's method or path as one log token: printable ASCII only (anything else as '?'), at most 256 bytes,
// "-" when empty, so that no request can forge or split a log line.
static std::string log_token(const std::string& s) {
  if (s.empty()) return "-";
  std::string out = s.substr(0, 256);
  for (char& c : out)
    if (c <= ' ' || c > '~') c = '?';
  return s.size() > 256 ? out + "..." : out;
}

void Api::access_log(const std::string& route, const http::HttpRequest& req, int status, SteadyClock::time_point t0,
                     const std::string& id, const stream::JobSummary* job) const {
  const std::string& method = req.method;
  const std::string& path = req.path;
  const std::string request_id = log_token(req.request_id);
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  if (metrics_) metrics_->observe_http_duration(route, seconds);
  const double ms = seconds * 1e3;
  const double ttft_ms = job == nullptr || job->ttft_s < 0 ? -1.0 : job->ttft_s * 1e3;
  if (monitoring::log_format_is_json()) {
    nlohmann::ordered_json f = {{"event", "access"},
                                {"method", log_token(method)},
                                {"path", log_token(path)},
                                {"status", status},
                                {"latency_ms", std::round(ms * 10) / 10},
                                {"request_id", request_id}};
    if (job != nullptr) {
      f["id"] = id;
      f["prompt_tokens"] = job->prompt_tokens;
      f["cached_tokens"] = job->cached_tokens;
      f["completion_tokens"] = job->completion_tokens;
      if (ttft_ms >= 0) f["ttft_ms"] = std::round(ttft_ms * 10) / 10;
    }
    monitoring::log_fields(spdlog::level::info, f);
    return;
  }
  if (job == nullptr) {
    spdlog::info("access: {} {} {} {:.1f} ms request_id={}", log_token(method), log_token(path), status, ms,
                 request_id);
    return;
  }
  spdlog::info(
      "access: {} {} {} {:.1f} ms request_id={} id={} prompt_tokens={} cached_tokens={} completion_tokens={} "
      "ttft_ms={:.1f}",
      log_token(method), log_token(path), status, ms, request_id, id, job->prompt_tokens, job->cached_tokens,
      job->completion_tokens, ttft_ms);
}

void Api::handle(http::HttpRequest req, std::shared_ptr<http::Exchange> ex) {
  const auto t0 = SteadyClock::now();
  std::string route = "other";
  try {
    if (req.error_status != 0) throw from_framing_status(req.error_status, req.error_message);
    const Route* found = nullptr;
    bool path_known = false;
    for (const Route& r : kRoutes) {
      if (req.path != r.path) continue;
      path_known = true;
      if (req.method == r.method) found = &r;
    }
    if (path_known && req.path == "/metrics" && !options_.serve_metrics) path_known = false;
    if (!path_known) throw ApiError(ErrorKind::kNotFound, "no route " + req.method + " " + req.path);
    route = req.path;
    if (!found) throw ApiError(ErrorKind::kMethodNotAllowed, "method " + req.method + " is not allowed on " + req.path);
    const auto& open = options_.public_routes;
    if (!options_.api_key.empty() && std::find(open.begin(), open.end(), req.path) == open.end()) {
      if (req.authorization.empty())
        throw ApiError(ErrorKind::kUnauthorized, "missing API key: send 'Authorization: Bearer <key>'");
      if (!bearer_matches(req.authorization, options_.api_key))
        throw ApiError(ErrorKind::kUnauthorized, "incorrect API key provided");
    }

    http::HttpResponse r;
    if (req.path == "/v1/completions" || req.path == "/v1/chat/completions") {
      completions(req, ex, t0, req.path == "/v1/chat/completions", route);
      return;  // the CompletionJob answers (and counts)
    } else if (req.path == "/health") {
      r = json_response({{"status", "ok"}});
    } else if (req.path == "/ready") {
      if (failed_.load()) {
        std::lock_guard lock(failure_mu_);
        throw ApiError(ErrorKind::kUnavailable, "the cluster failed: " + failure_);
      }
      if (draining_.load()) throw ApiError(ErrorKind::kUnavailable, "draining: the server is shutting down");
      if (!ready_.load()) throw ApiError(ErrorKind::kUnavailable, "not ready: the cluster is starting");
      r = json_response({{"status", "ready"}});
    } else if (req.path == "/version") {
      r = json_response({{"version", options_.version}, {"commit", options_.commit}});
    } else if (req.path == "/metrics") {
      r = {200, "text/plain; version=0.0.4; charset=utf-8", metrics_ ? metrics_->exposition() : "", {}};
    } else if (req.path == "/v1/models") {
      r = models();
    } else if (req.path == "/tokenize") {
      r = tokenize(req.body);
    } else {
      r = detokenize(req.body);
    }
    count(route, r.status);
    access_log(route, req, r.status, t0, "", nullptr);
    ex->respond(std::move(r));
  } catch (const ApiError& e) {
    http::HttpResponse r = to_response(e, options_.retry_after_s);
    if (e.kind() == ErrorKind::kMethodNotAllowed) {
      for (const Route& rt : kRoutes)
        if (req.path == rt.path) r.headers.emplace_back("Allow", rt.method);
    }
    count(route, r.status);
    access_log(route, req, r.status, t0, "", nullptr);
    ex->respond(std::move(r));
  } catch (const Error& e) {
    // Bad data found below the api layer (e.g. invalid UTF-8 in a text to tokenize).
    http::HttpResponse r = to_response(ApiError(ErrorKind::kInvalid, e.what()), options_.retry_after_s);
    count(route, r.status);
    access_log(route, req, r.status, t0, "", nullptr);
    ex->respond(std::move(r));
  } catch (const std::exception& e) {
    http::HttpResponse r =
        to_response(ApiError(ErrorKind::kInternal, std::string("internal error: ") + e.what()), options_.retry_after_s);
    count(route, r.status);
    access_log(route, req, r.status, t0, "", nullptr);
    ex->respond(std::move(r));
  }
}

void Api::completions(const http::HttpRequest& req, const std::shared_ptr<http::Exchange>& ex,
                      SteadyClock::time_point t0, bool chat, const std::string& route) {
  if (draining_.load()) throw ApiError(ErrorKind::kUnavailable, "the server is shutting down (draining)");
  const json body = parse_request_body(req.body);
  CompletionParams p = parse_completion(body, chat, options_.limits, tokenizer_);

  stream::JobOptions jo;
  jo.chat = chat;
  jo.stream = p.stream;
  jo.include_usage = p.include_usage;
  jo.logprobs = p.logprobs;
  jo.echo = p.echo;
  jo.return_token_ids = p.return_token_ids;
  jo.n = p.n;
  jo.id = (chat ? "chatcmpl-" : "cmpl-") + random_hex();
  jo.model = options_.limits.model_name;
  jo.created = static_cast<int64_t>(std::time(nullptr));
  jo.stop = p.stop;
  jo.min_tokens = p.sampling.min_tokens;
  jo.stop_token_ids = p.stop_token_ids;
  for (const auto& pr : p.prompts) jo.prompt_tokens.push_back(static_cast<int32_t>(pr.size()));
  jo.echo_texts = p.echo_texts;
  const int retry = options_.retry_after_s;
  stream::JobHooks hooks;
  hooks.internal_error = [retry](const std::string& message) {
    return to_response(ApiError(ErrorKind::kInternal, message), retry);
  };
  hooks.on_status = [this, route](int status) { count(route, status); };
  http::HttpRequest logged;  // what the access line names: not the body
  logged.method = req.method;
  logged.path = req.path;
  logged.request_id = req.request_id;
  hooks.on_done = [this, route, logged = std::move(logged), t0, id = jo.id](const stream::JobSummary& done) {
    access_log(route, logged, done.status, t0, id, &done);
  };
  auto job = std::make_shared<stream::CompletionJob>(std::move(jo), tokenizer_, ex, std::move(hooks));

  // The ids that end a sequence: EOS (unless ignore_eos) and the request's stop_token_ids, which apply even
  // with ignore_eos (vLLM). While fewer than min_tokens were generated, the workers cannot sample them.
  std::vector<int32_t> stop_ids;
  if (!p.ignore_eos && tokenizer_) stop_ids = tokenizer_->stop_ids();
  stop_ids.insert(stop_ids.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
  std::sort(stop_ids.begin(), stop_ids.end());
  stop_ids.erase(std::unique(stop_ids.begin(), stop_ids.end()), stop_ids.end());
  std::vector<std::shared_ptr<Request>> requests;
  const auto now = SteadyClock::now();
  for (size_t i = 0; i < p.prompts.size(); ++i) {
    auto r = std::make_shared<Request>();
    r->id = next_id_.fetch_add(1);
    r->prompt = std::move(p.prompts[i]);
    r->max_tokens = p.max_tokens;
    r->n = p.n;
    r->sampling = p.sampling;
    r->stop_ids = stop_ids;
    r->logit_bias = p.logit_bias;
    r->arrival = now;
    if (options_.request_timeout_s > 0)
      r->deadline = now + std::chrono::duration_cast<SteadyClock::duration>(
                              std::chrono::duration<double>(options_.request_timeout_s));
    r->sink = job->sink(static_cast<int32_t>(i));
    requests.push_back(std::move(r));
  }
  job->set_requests(requests);
  for (auto& r : requests) {
    std::string why;
    const SubmitStatus s = submit_(r, &why);
    if (s != SubmitStatus::kAccepted) {
      job->abandon();  // cancels the prompts already submitted
      throw from_submit_status(s, why);
    }
  }
  std::weak_ptr<stream::CompletionJob> weak = job;
  ex->on_disconnect([weak] {
    if (auto j = weak.lock()) j->cancel_all();
  });
  job->begin();
}

http::HttpResponse Api::models() const {
  json model = {{"id", options_.limits.model_name},
                {"object", "model"},
                {"created", created_},
                {"owned_by", "tessera"},
                {"root", options_.limits.model_name},
                {"max_model_len", options_.limits.max_ctx}};
  return json_response({{"object", "list"}, {"data", json::array({model})}});
}

http::HttpResponse Api::tokenize(const std::string& body_text) const {
  const json body = parse_request_body(body_text);
  if (!body.is_object()) throw ApiError(ErrorKind::kInvalid, "the request body must be a JSON object");
  if (!tokenizer_) throw ApiError(ErrorKind::kInvalid, "this model has no tokenizer");
  if (auto m = body.find("model"); m != body.end() && !m->is_null() && *m != options_.limits.model_name)
    throw ApiError(ErrorKind::kModelNotFound, "The model " + describe_value(*m) + " does not exist", "model");
  std::vector<int32_t> ids;
  auto add_special = body.find("add_special_tokens");
  if (add_special != body.end() && !add_special->is_boolean())
    throw ApiError(ErrorKind::kInvalid, "'add_special_tokens': must be a boolean", "add_special_tokens");
  if (auto msgs = body.find("messages"); msgs != body.end()) {
    bool gen = true;
    if (auto g = body.find("add_generation_prompt"); g != body.end()) {
      if (!g->is_boolean())
        throw ApiError(ErrorKind::kInvalid, "'add_generation_prompt': must be a boolean", "add_generation_prompt");
      gen = g->get<bool>();
    }
    ids = tokenizer_->encode(tokenizer_->apply_chat_template(parse_messages(*msgs), gen), false, true);
  } else if (auto prompt = body.find("prompt"); prompt != body.end() && prompt->is_string()) {
    const bool special = add_special == body.end() || add_special->get<bool>();
    ids = tokenizer_->encode(prompt->get<std::string>(), special, false);
  } else {
    throw ApiError(ErrorKind::kInvalid, "'prompt': is required and must be a string (or send 'messages')", "prompt");
  }
  return json_response({{"tokens", ids}, {"count", ids.size()}, {"max_model_len", options_.limits.max_ctx}});
}

http::HttpResponse Api::detokenize(const std::string& body_text) const {
  const json body = parse_request_body(body_text);
  if (!body.is_object()) throw ApiError(ErrorKind::kInvalid, "the request body must be a JSON object");
  if (!tokenizer_) throw ApiError(ErrorKind::kInvalid, "this model has no tokenizer");
  auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array())
    throw ApiError(ErrorKind::kInvalid, "'tokens': is required and must be a list of token ids", "tokens");
  std::vector<int32_t> ids;
  for (const json& v : *tokens) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= options_.limits.vocab)
      throw ApiError(
          ErrorKind::kInvalid,
          "'tokens': " + describe_value(v) + " is not a token id in [0, " + std::to_string(options_.limits.vocab) + ")",
          "tokens");
    ids.push_back(v.get<int32_t>());
  }
  return json_response({{"prompt", tokenizer_->decode(ids, false)}});
}

}  // namespace tessera::coordinator::api
