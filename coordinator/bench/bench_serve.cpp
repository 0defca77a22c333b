// coordinator/bench/bench_serve.cpp — the client side of `tessera bench serve`: prompts, arrivals, streaming
// HTTP requests over Boost.Beast, and the report.
#include <utility>  // before Asio: Boost 1.74 under C++20 with g++ 12

#include "coordinator/bench/bench_serve.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <cmath>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "coordinator/bench/bench_stats.h"

namespace tessera::bench {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Prompt {
  json prompt;         // a string or a list of token ids
  int64_t prompt_len;  // tokens, when known here (token-id prompts); else 0 until the server's usage says
  int output_len;
};

std::vector<Prompt> make_prompts(const BenchServeOptions& o, bool chat) {
  std::vector<Prompt> prompts;
  if (!o.dataset.empty()) {
    std::ifstream in(o.dataset);
    if (!in) throw Error(o.dataset + ": cannot read the dataset");
    std::vector<Prompt> all;
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& e) {
        throw Error(o.dataset + ":" + std::to_string(line_no) + ": not JSON: " + e.what());
      }
      Prompt p{json(), 0, o.random_output_len};
      if (j.is_string()) {
        p.prompt = j;
      } else if (j.is_object() && j.contains("prompt")) {
        p.prompt = j["prompt"];
        for (const char* k : {"output_len", "max_tokens"})
          if (j.contains(k) && j[k].is_number_integer()) p.output_len = j[k].get<int>();
      } else {
        throw Error(o.dataset + ":" + std::to_string(line_no) + ": expected a string or {\"prompt\": ...}");
      }
      if (p.prompt.is_array()) {
        for (const auto& id : p.prompt)
          if (!id.is_number_integer()) throw Error(o.dataset + ":" + std::to_string(line_no) + ": bad token id");
        p.prompt_len = static_cast<int64_t>(p.prompt.size());
        if (chat) throw Error(o.dataset + ": token-id prompts need /v1/completions, not " + o.endpoint);
      } else if (!p.prompt.is_string()) {
        throw Error(o.dataset + ":" + std::to_string(line_no) + ": prompt must be a string or a list of token ids");
      }
      all.push_back(std::move(p));
    }
    if (all.empty()) throw Error(o.dataset + ": no prompts");
    for (int i = 0; i < o.num_prompts; ++i) prompts.push_back(all[static_cast<size_t>(i) % all.size()]);
    return prompts;
  }
  if (o.random_input_len < 1 || o.random_vocab < 2)
    throw Error("--random-input-len and --random-vocab must be >= 1, 2");
  std::mt19937_64 rng(o.seed);
  const int lo = std::min(32, o.random_vocab / 2);
  std::uniform_int_distribution<int> id(lo, o.random_vocab - 1);
  std::vector<int> prefix(static_cast<size_t>(std::max(o.random_prefix_len, 0)));
  for (auto& t : prefix) t = id(rng);
  const int len_lo = std::max(1, static_cast<int>(o.random_input_len * (1.0 - o.random_range_ratio))),
            len_hi = std::max(len_lo, static_cast<int>(o.random_input_len * (1.0 + o.random_range_ratio)));
  std::uniform_int_distribution<int> length(len_lo, len_hi);
  for (int i = 0; i < o.num_prompts; ++i) {
    std::vector<int> ids = prefix;
    const int len = o.random_range_ratio > 0 ? length(rng) : o.random_input_len;
    for (int k = 0; k < len; ++k) ids.push_back(id(rng));
    if (chat) {
      // A chat endpoint takes text: printable ASCII words of random letters, about one token each.
      std::string text;
      for (int t : ids) text += std::string(text.empty() ? "" : " ") + static_cast<char>('a' + t % 26);
      prompts.push_back({json(text), 0, o.random_output_len});
    } else {
      prompts.push_back({json(ids), static_cast<int64_t>(ids.size()), o.random_output_len});
    }
  }
  return prompts;
}

class Connection {
 public:
  Connection(const BenchServeOptions& o) : o_(o), stream_(ioc_) {}

  void connect() {
    tcp::resolver resolver(ioc_);
    stream_.expires_after(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o_.timeout_s)));
    stream_.connect(resolver.resolve(o_.host, std::to_string(o_.port)));
  }

  http::request<http::string_body> make(http::verb verb, const std::string& target, const std::string& body) const {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, o_.host + ":" + std::to_string(o_.port));
    req.set(http::field::user_agent, "tessera-bench-serve");
    if (!o_.api_key.empty()) req.set(http::field::authorization, "Bearer " + o_.api_key);
    if (verb == http::verb::post) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    return req;
  }

  // A whole request/response on this (keep-alive) connection.
  std::pair<int, std::string> roundtrip(http::verb verb, const std::string& target, const std::string& body = "") {
    stream_.expires_after(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o_.timeout_s)));
    http::write(stream_, make(verb, target, body));
    http::response<http::string_body> res;
    http::read(stream_, buffer_, res);
    return {res.result_int(), res.body()};
  }

  // Sends one streaming request; calls on_data(bytes, arrival time) for every piece of the body.
  template <class OnData>
  int stream(const std::string& target, const std::string& body, Clock::time_point* sent, OnData on_data) {
    *sent = Clock::now();
    http::write(stream_, make(http::verb::post, target, body));
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    http::read_header(stream_, buffer_, parser);
    const int status = parser.get().result_int();
    char chunk[16384];
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      beast::error_code ec;
      // read_some, not read: read would wait to fill the buffer, and every chunk must be stamped on arrival.
      http::read_some(stream_, buffer_, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) throw beast::system_error(ec);
      const size_t n = sizeof chunk - parser.get().body().size;
      if (n > 0) on_data(std::string_view(chunk, n), Clock::now());
    }
    return status;
  }

 private:
  const BenchServeOptions& o_;
  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

RequestOutcome send_one(const BenchServeOptions& o, bool chat, const std::string& model, const Prompt& p) {
  RequestOutcome out;
  out.prompt_len = p.prompt_len;
  json body = {{"max_tokens", p.output_len},
               {"temperature", o.temperature},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (!model.empty()) body["model"] = model;
  if (o.ignore_eos) body["ignore_eos"] = true;
  if (chat) {
    body["messages"] = json::array({{{"role", "user"}, {"content", p.prompt}}});
  } else {
    body["prompt"] = p.prompt;
  }
  Clock::time_point sent{}, last{};
  bool first = true, done = false;
  int64_t chunks = 0, usage_tokens = -1;
  std::string pending, error_body;
  auto on_event = [&](const std::string& data, Clock::time_point now) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    json j;
    try {
      j = json::parse(data);
    } catch (const json::exception&) {
      out.error = "bad SSE data: " + data.substr(0, 200);
      return;
    }
    if (j.contains("error")) {
      out.error = j["error"].dump();
      return;
    }
    if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
      const json& c = j["choices"][0];
      const json* piece = nullptr;
      if (chat) {
        if (c.contains("delta") && c["delta"].contains("content") && c["delta"]["content"].is_string())
          piece = &c["delta"]["content"];
        // The role chunk is no token: tessera sends it before the prompt is even computed (vLLM with the
        // first token), so counting it made TTFT ~0 and the first ITL the real TTFT.
        if (piece && piece->get_ref<const std::string&>().empty() && c["delta"].contains("role")) piece = nullptr;
      } else if (c.contains("text") && c["text"].is_string()) {
        piece = &c["text"];
      }
      const bool finish_only = c.contains("finish_reason") && !c["finish_reason"].is_null() &&
                               (!piece || piece->get_ref<const std::string&>().empty());
      // One chunk per token, as vLLM's client counts them; the text may be "" (a token whose text the server
      // holds back: half a UTF-8 character, a possible stop-string prefix, a special token).
      if (piece && !finish_only) {
        if (first) {
          out.ttft_s = seconds_between(sent, now);
          first = false;
        } else {
          out.itl_s.push_back(seconds_between(last, now));
        }
        last = now;
        ++chunks;
      }
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      const json& u = j["usage"];
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
        usage_tokens = u["completion_tokens"].get<int64_t>();
      if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
        out.prompt_len = u["prompt_tokens"].get<int64_t>();
    }
  };
  int status = 0;
  try {
    Connection conn(o);
    conn.connect();
    status = conn.stream(o.endpoint, body.dump(), &sent, [&](std::string_view bytes, Clock::time_point now) {
      pending.append(bytes);
      // SSE events end with a blank line; lines of one event start with "data:".
      for (size_t end; (end = pending.find("\n\n")) != std::string::npos;) {
        std::string event = pending.substr(0, end);
        pending.erase(0, end + 2);
        size_t pos = 0;
        while (pos <= event.size()) {
          size_t nl = event.find('\n', pos);
          if (nl == std::string::npos) nl = event.size();
          std::string line = event.substr(pos, nl - pos);
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (line.rfind("data:", 0) == 0) {
            size_t b = 5;
            if (b < line.size() && line[b] == ' ') ++b;
            on_event(line.substr(b), now);
          }
          pos = nl + 1;
        }
      }
      if (pending.size() > (1u << 20)) pending.clear();  // not SSE: an error body
    });
    out.latency_s = seconds_between(sent, Clock::now());
  } catch (const std::exception& e) {
    out.error = std::string("connection: ") + e.what();
    return out;
  }
  if (status != 200) {
    out.error = "HTTP " + std::to_string(status) + ": " + pending.substr(0, 300);
    return out;
  }
  if (!out.error.empty()) return out;
  if (!done) {
    out.error = "the stream ended without data: [DONE]";
    return out;
  }
  if (first) {
    out.error = "no tokens in the response";
    return out;
  }
  out.output_tokens = usage_tokens >= 0 ? usage_tokens : chunks;
  out.success = true;
  return out;
}

// A counting semaphore whose limit may be "none".
class Limiter {
 public:
  explicit Limiter(int limit) : limit_(limit) {}
  void acquire() {
    if (limit_ <= 0) return;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_use_ < limit_; });
    ++in_use_;
  }
  void release() {
    if (limit_ <= 0) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --in_use_;
    }
    cv_.notify_one();
  }

 private:
  int limit_;
  int in_use_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
};

std::string fetch_model(const BenchServeOptions& o) {
  Connection conn(o);
  conn.connect();
  auto [status, body] = conn.roundtrip(http::verb::get, "/v1/models");
  if (status != 200) throw Error("GET /v1/models: HTTP " + std::to_string(status) + ": " + body.substr(0, 200));
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].contains("id"))
    throw Error("GET /v1/models: no model in the answer: " + body.substr(0, 200));
  return j["data"][0]["id"].get<std::string>();
}

std::string now_string() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
  return buf;
}

}  // namespace

int run_bench_serve(const BenchServeOptions& o) {
  if (o.num_prompts < 1) throw Error("--num-prompts must be >= 1");
  if (!(o.request_rate > 0)) throw Error("--request-rate must be > 0 (or inf)");
  if (!(o.burstiness > 0)) throw Error("--burstiness must be > 0");
  if (o.max_concurrency < 0) throw Error("--max-concurrency must be >= 0");
  if (o.endpoint != "/v1/completions" && o.endpoint != "/v1/chat/completions")
    throw Error("--endpoint must be /v1/completions or /v1/chat/completions, got " + o.endpoint);
  const bool chat = o.endpoint == "/v1/chat/completions";
  const GoodputSlo slo = parse_goodput(o.goodput);
  const std::vector<Prompt> prompts = make_prompts(o, chat);

  std::string model = o.model;
  if (model.empty()) {
    try {
      model = fetch_model(o);
    } catch (const std::exception& e) {
      throw Error(std::string("cannot reach http://") + o.host + ":" + std::to_string(o.port) + ": " + e.what());
    }
  }
  if (o.warmup) {
    std::printf("Starting initial single prompt test run...\n");
    const RequestOutcome w = send_one(o, chat, model, prompts[0]);
    if (!w.success) throw Error("the initial test request failed: " + w.error);
    std::printf("Initial test run completed. Starting main benchmark run...\n");
  }
  std::printf("Traffic request rate: %g\n", o.request_rate);
  std::printf("Burstiness factor: %g (%s)\n", o.burstiness,
              o.burstiness == 1.0 ? "Poisson process" : "Gamma distribution");
  if (o.max_concurrency > 0) {
    std::printf("Maximum request concurrency: %d\n", o.max_concurrency);
  } else {
    std::printf("Maximum request concurrency: None\n");
  }
  std::fflush(stdout);

  const std::vector<double> arrivals = arrival_times(o.num_prompts, o.request_rate, o.burstiness, o.seed);
  std::vector<RequestOutcome> outcomes(prompts.size());
  Limiter limiter(o.max_concurrency);
  std::vector<std::thread> threads;
  threads.reserve(prompts.size());

  // Optional: how many GET /health a client gets answered per second while the server is under this load.
  std::atomic<bool> probing{o.health_probe};
  std::atomic<int64_t> health_ok{0}, health_failed{0};
  std::thread prober;
  if (o.health_probe) {
    prober = std::thread([&] {
      while (probing.load()) {
        try {
          Connection conn(o);
          conn.connect();
          while (probing.load()) {
            auto [status, body] = conn.roundtrip(http::verb::get, "/health");
            (status == 200 ? health_ok : health_failed).fetch_add(1);
          }
        } catch (const std::exception&) {
          health_failed.fetch_add(1);
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    });
  }

  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrivals[i])));
    limiter.acquire();  // FIFO through this one thread, like vLLM's semaphore around each request
    threads.emplace_back([&, i] {
      outcomes[i] = send_one(o, chat, model, prompts[i]);
      limiter.release();
    });
  }
  for (auto& t : threads) t.join();
  const double duration = seconds_between(start, Clock::now());
  probing.store(false);
  if (prober.joinable()) prober.join();

  const BenchMetrics m = compute_metrics(outcomes, duration, slo, o.percentiles);
  std::cout << format_table(m, slo);
  const double health_rps = o.health_probe ? health_ok.load() / duration : 0.0;
  if (o.health_probe)
    std::printf("%-40s %-10.1f\n%-40s %-10lld\n", "GET /health under load (req/s):", health_rps,
                "GET /health failures:", static_cast<long long>(health_failed.load()));
  std::map<std::string, int> errors;
  for (const auto& r : outcomes)
    if (!r.success) ++errors[r.error.substr(0, 120)];
  for (const auto& [e, n] : errors) std::fprintf(stderr, "%d requests failed: %s\n", n, e.c_str());
  std::fflush(stdout);

  if (!o.output_json.empty()) {
    json j = metrics_json(m);
    j["date"] = now_string();
    j["backend"] = "tessera";
    j["endpoint"] = o.endpoint;
    j["model_id"] = model;
    j["num_prompts"] = o.num_prompts;
    j["request_rate"] = std::isinf(o.request_rate) ? json("inf") : json(o.request_rate);
    j["burstiness"] = o.burstiness;
    j["max_concurrency"] = o.max_concurrency > 0 ? json(o.max_concurrency) : json(nullptr);
    j["ignore_eos"] = o.ignore_eos;
    j["seed"] = o.seed;
    if (o.health_probe) j["health_requests_per_s"] = health_rps;
    json input_lens = json::array(), output_lens = json::array(), ttfts = json::array(), itls = json::array(),
         errs = json::array();
    for (const auto& r : outcomes) {
      input_lens.push_back(r.prompt_len);
      output_lens.push_back(r.output_tokens);
      ttfts.push_back(r.ttft_s);
      itls.push_back(r.itl_s);
      errs.push_back(r.error);
    }
    j["input_lens"] = input_lens;
    j["output_lens"] = output_lens;
    j["ttfts"] = ttfts;
    j["itls"] = itls;
    j["errors"] = errs;
    std::ofstream f(o.output_json);
    if (!f) throw Error(o.output_json + ": cannot write");
    f << j.dump(2) << "\n";
  }
  return m.completed > 0 ? 0 : 1;
}

}  // namespace tessera::bench
