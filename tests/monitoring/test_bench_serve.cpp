// tests/monitoring/test_bench_serve.cpp — `tessera bench serve`: its statistics (numpy-style percentiles,
// goodput, TPOT), its arrival process (mean rate, burstiness), and a loopback run against a tiny Beast server
// written here that streams SSE like an OpenAI server (chunked, usage chunk, data: [DONE]).
#include <utility>  // before Asio: Boost 1.74 under C++20 with g++ 12

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/check.h"
#include "coordinator/bench/bench_serve.h"
#include "coordinator/bench/bench_stats.h"

namespace tb = tessera::bench;
using nlohmann::json;

TEST(BenchStats, PercentileMatchesNumpy) {
  // numpy.percentile([1, 2, 3, 4], p) for p = 0, 25, 50, 90, 99, 100
  const std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(tb::percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(tb::percentile(v, 25), 1.75);
  EXPECT_DOUBLE_EQ(tb::percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(tb::percentile(v, 90), 3.7);
  EXPECT_NEAR(tb::percentile(v, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(tb::percentile(v, 100), 4.0);
  EXPECT_DOUBLE_EQ(tb::percentile({7}, 99), 7.0);
  EXPECT_DOUBLE_EQ(tb::percentile({}, 50), 0.0);
  EXPECT_DOUBLE_EQ(tb::mean({1, 2, 3, 4}), 2.5);
  EXPECT_NEAR(tb::stddev({1, 2, 3, 4}), std::sqrt(1.25), 1e-12);  // population std, as numpy.std
}

TEST(BenchStats, MetricsTpotGoodputThroughput) {
  std::vector<tb::RequestOutcome> out(4);
  // 10 tokens: TTFT 100 ms, E2E 1000 ms → TPOT 100 ms.
  out[0] = {true, 0.1, 1.0, std::vector<double>(9, 0.1), 20, 10, ""};
  // 5 tokens: TTFT 300 ms, E2E 500 ms → TPOT 50 ms.
  out[1] = {true, 0.3, 0.5, std::vector<double>(4, 0.05), 30, 5, ""};
  // 1 token: no TPOT (0 for goodput).
  out[2] = {true, 0.2, 0.2, {}, 10, 1, ""};
  out[3].success = false;
  out[3].error = "HTTP 429";
  const tb::GoodputSlo slo = tb::parse_goodput({"ttft:250", "tpot:80"});
  const tb::BenchMetrics m = tb::compute_metrics(out, 2.0, slo, {50, 99});
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 1);
  EXPECT_EQ(m.total_input, 60);
  EXPECT_EQ(m.total_output, 16);
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(m.output_throughput, 8.0);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 38.0);
  // Good: out[2] only (out[0] fails tpot 100 > 80, out[1] fails ttft 300 > 250).
  EXPECT_DOUBLE_EQ(m.request_goodput, 0.5);
  EXPECT_NEAR(m.ttft.mean, 200.0, 1e-9);
  EXPECT_NEAR(m.ttft.median, 200.0, 1e-9);
  EXPECT_NEAR(m.tpot.mean, 75.0, 1e-9);  // only requests with > 1 token
  EXPECT_NEAR(m.itl.mean, (9 * 100.0 + 4 * 50.0) / 13, 1e-9);
  EXPECT_NEAR(m.e2el.percentiles.at(1).second, tb::percentile({1.0, 0.5, 0.2}, 99) * 1000, 1e-9);
  const json j = tb::metrics_json(m);
  EXPECT_TRUE(j.contains("p99_ttft_ms"));
  EXPECT_TRUE(j.contains("median_itl_ms"));
  EXPECT_DOUBLE_EQ(j["request_goodput"].get<double>(), 0.5);
  const std::string table = tb::format_table(m, slo);
  EXPECT_NE(table.find("Serving Benchmark Result"), std::string::npos);
  EXPECT_NE(table.find("Request goodput (req/s):"), std::string::npos);
  EXPECT_NE(table.find("P99 TTFT (ms):"), std::string::npos);
}

TEST(BenchStats, GoodputParsing) {
  const tb::GoodputSlo s = tb::parse_goodput({"e2el:2000"});
  EXPECT_FALSE(s.ttft_ms.has_value());
  EXPECT_EQ(*s.e2el_ms, 2000);
  EXPECT_TRUE(tb::parse_goodput({}).empty());
  EXPECT_THROW(tb::parse_goodput({"latency:5"}), tessera::Error);
  EXPECT_THROW(tb::parse_goodput({"ttft"}), tessera::Error);
  EXPECT_THROW(tb::parse_goodput({"ttft:abc"}), tessera::Error);
  EXPECT_THROW(tb::parse_goodput({"ttft:-5"}), tessera::Error);
}

TEST(BenchArrivals, PoissonMeanRateAndDeterminism) {
  const int n = 20000;
  const auto t = tb::arrival_times(n, 50.0, 1.0, 7);
  ASSERT_EQ(t.size(), static_cast<size_t>(n));
  EXPECT_EQ(t[0], 0.0);
  for (int i = 1; i < n; ++i) ASSERT_GE(t[i], t[i - 1]);
  const double rate = (n - 1) / t.back();
  EXPECT_NEAR(rate, 50.0, 50.0 * 0.03);
  // Exponential gaps: coefficient of variation 1.
  std::vector<double> gaps;
  for (int i = 1; i < n; ++i) gaps.push_back(t[i] - t[i - 1]);
  EXPECT_NEAR(tb::stddev(gaps) / tb::mean(gaps), 1.0, 0.05);
  EXPECT_EQ(tb::arrival_times(100, 50.0, 1.0, 7), tb::arrival_times(100, 50.0, 1.0, 7));
  EXPECT_NE(tb::arrival_times(100, 50.0, 1.0, 7), tb::arrival_times(100, 50.0, 1.0, 8));
}

TEST(BenchArrivals, BurstinessKeepsTheRateAndChangesTheSpread) {
  // Gamma(shape k, scale 1/(rate k)): mean gap 1/rate, CV = 1/sqrt(k).
  for (double k : {0.25, 4.0}) {
    const int n = 20000;
    const auto t = tb::arrival_times(n, 10.0, k, 3);
    std::vector<double> gaps;
    for (int i = 1; i < n; ++i) gaps.push_back(t[i] - t[i - 1]);
    EXPECT_NEAR(tb::mean(gaps), 0.1, 0.1 * 0.05) << k;
    EXPECT_NEAR(tb::stddev(gaps) / tb::mean(gaps), 1.0 / std::sqrt(k), 0.1 / std::sqrt(k)) << k;
  }
  for (double x : tb::arrival_times(50, INFINITY, 1.0, 0)) EXPECT_EQ(x, 0.0);  // as fast as possible
}

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// A tiny OpenAI-like server: GET /v1/models, GET /health, streaming POST /v1/completions and
// /v1/chat/completions that emit max_tokens chunks 2 ms apart, like tessera: chat starts with a role chunk at
// once, and the second token's chunk has no text (a server holding back half a character). `fail_status` != 0
// answers every completion with that status and an OpenAI-shaped error instead.
class TinyServer {
 public:
  explicit TinyServer(int fail_status = 0)
      : fail_status_(fail_status), acceptor_(ioc_, {net::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~TinyServer() {
    stop_ = true;
    try {  // wake the blocking accept
      net::io_context ioc;
      tcp::socket s(ioc);
      s.connect({net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port_)});
    } catch (...) {
    }
    thread_.join();
    for (auto& t : workers_) t.join();
  }
  int port() const { return port_; }
  int max_in_flight() const { return max_in_flight_.load(); }
  int completions() const { return completions_.load(); }
  int health() const { return health_.load(); }
  std::vector<json> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }

 private:
  void accept_loop() {
    while (!stop_) {
      tcp::socket socket(ioc_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stop_) break;
      std::lock_guard<std::mutex> lock(mu_);
      workers_.emplace_back([this, s = std::move(socket)]() mutable { serve(std::move(s)); });
    }
  }

  static void write_chunk(tcp::socket& s, const std::string& data) {
    char head[32];
    std::snprintf(head, sizeof head, "%zx\r\n", data.size());
    net::write(s, net::buffer(std::string(head) + data + "\r\n"));
  }

  void serve(tcp::socket socket) {
    beast::flat_buffer buf;
    beast::error_code ec;
    for (int i = 0; i < 100000 && !stop_; ++i) {  // keep-alive, bounded
      http::request<http::string_body> req;
      http::read(socket, buf, req, ec);
      if (ec) return;
      const std::string target(req.target());
      if (req.method() == http::verb::get && (target == "/v1/models" || target == "/health")) {
        if (target == "/health") ++health_;
        http::response<http::string_body> res{http::status::ok, 11};
        res.set(http::field::content_type, "application/json");
        res.body() = target == "/health" ? "{}" : R"({"object":"list","data":[{"id":"tiny","object":"model"}]})";
        res.keep_alive(true);
        res.prepare_payload();
        http::write(socket, res, ec);
        if (ec) return;
        continue;
      }
      const json body = json::parse(req.body(), nullptr, false);
      {
        std::lock_guard<std::mutex> lock(mu_);
        bodies_.push_back(body);
      }
      if (fail_status_ != 0) {
        http::response<http::string_body> res{static_cast<http::status>(fail_status_), 11};
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"error":{"message":"queue full","type":"rate_limit","code":429}})";
        res.prepare_payload();
        http::write(socket, res, ec);
        return;
      }
      const int now = ++in_flight_;
      for (int m = max_in_flight_.load(); now > m && !max_in_flight_.compare_exchange_weak(m, now);) {
      }
      const bool chat = target == "/v1/chat/completions";
      const int n = body.value("max_tokens", 16);
      const int prompt_len =
          body.contains("prompt") && body["prompt"].is_array() ? static_cast<int>(body["prompt"].size()) : 3;
      // Leaves the count before the last bytes go out: the client cannot have seen this request end (and
      // started its next one) before that, so in-flight is never overstated on a loaded machine.
      bool counted = true;
      auto leave = [&] {
        if (counted) --in_flight_;
        counted = false;
      };
      try {
        net::write(socket, net::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")));
        if (chat) {
          json role = {{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}};
          write_chunk(socket, "data: " + json{{"choices", {role}}}.dump() + "\n\n");
        }
        for (int t = 0; t < n; ++t) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          const std::string text = t == 1 ? "" : "x";
          json c = chat ? json{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}}
                        : json{{"index", 0}, {"text", text}, {"finish_reason", nullptr}};
          write_chunk(socket, "data: " + json{{"choices", {c}}}.dump() + "\n\n");
        }
        json fin = chat ? json{{"index", 0}, {"delta", json::object()}, {"finish_reason", "length"}}
                        : json{{"index", 0}, {"text", ""}, {"finish_reason", "length"}};
        // The finish chunk and the usage chunk arrive in one TCP write, as a server may batch them.
        write_chunk(socket, "data: " + json{{"choices", {fin}}}.dump() + "\n\ndata: " +
                                json{{"choices", json::array()},
                                     {"usage", {{"prompt_tokens", prompt_len}, {"completion_tokens", n}}}}
                                    .dump() +
                                "\n\n");
        leave();
        write_chunk(socket, "data: [DONE]\n\n");
        net::write(socket, net::buffer(std::string("0\r\n\r\n")));
      } catch (...) {
      }
      leave();
      ++completions_;
      return;
    }
  }

  int fail_status_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<json> bodies_;
  std::atomic<int> in_flight_{0}, max_in_flight_{0}, completions_{0}, health_{0};
};

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("tessera_bench_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

}  // namespace

TEST(BenchServe, LoopbackRunCountsEveryTokenAndHonoursConcurrency) {
  TinyServer server;
  tb::BenchServeOptions o;
  o.port = server.port();
  o.num_prompts = 12;
  o.max_concurrency = 3;
  o.random_input_len = 7;
  o.random_output_len = 5;
  o.ignore_eos = true;
  o.health_probe = true;
  o.goodput = {"ttft:10000"};
  o.percentiles = {50, 99};
  o.output_json = temp_path("out.json");
  ASSERT_EQ(tb::run_bench_serve(o), 0);
  EXPECT_EQ(server.completions(), 13);  // + the warm-up
  EXPECT_LE(server.max_in_flight(), 3);
  EXPECT_GE(server.max_in_flight(), 2);
  EXPECT_GT(server.health(), 0);
  std::ifstream f(o.output_json);
  const json j = json::parse(f);
  std::filesystem::remove(o.output_json);
  EXPECT_EQ(j["completed"], 12);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["total_input_tokens"], 12 * 7);
  EXPECT_EQ(j["total_output_tokens"], 12 * 5);
  EXPECT_EQ(j["model_id"], "tiny");
  EXPECT_EQ(j["max_concurrency"], 3);
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_GT(j["health_requests_per_s"].get<double>(), 0);
  EXPECT_DOUBLE_EQ(j["request_goodput"].get<double>(), j["request_throughput"].get<double>());
  ASSERT_EQ(j["itls"].size(), 12u);
  // 5 token chunks (one with text "") → 4 gaps; the finish chunk is no token
  for (const auto& itl : j["itls"]) EXPECT_EQ(itl.size(), 4u);
  EXPECT_GE(j["mean_ttft_ms"].get<double>(), 1.0);  // the first chunk comes after a 2 ms sleep
  EXPECT_GE(j["mean_tpot_ms"].get<double>(), 1.0);
  for (const auto& b : server.bodies()) {
    EXPECT_EQ(b["model"], "tiny");
    EXPECT_EQ(b["stream"], true);
    EXPECT_EQ(b["stream_options"]["include_usage"], true);
    EXPECT_EQ(b["ignore_eos"], true);
    EXPECT_EQ(b["max_tokens"], 5);
    ASSERT_TRUE(b["prompt"].is_array());
    EXPECT_EQ(b["prompt"].size(), 7u);
    for (const auto& id : b["prompt"]) EXPECT_TRUE(id.get<int>() >= 32 && id.get<int>() < 256);
  }
}

TEST(BenchServe, ChatEndpointWithDatasetAndRate) {
  TinyServer server;
  const std::string ds = temp_path("ds.jsonl");
  std::ofstream(ds) << "\"hello there\"\n{\"prompt\": \"what is 2+2?\", \"output_len\": 3}\n\n";
  tb::BenchServeOptions o;
  o.port = server.port();
  o.endpoint = "/v1/chat/completions";
  o.model = "tiny";
  o.dataset = ds;
  o.num_prompts = 4;
  o.random_output_len = 2;
  o.request_rate = 200;
  o.output_json = temp_path("chat.json");
  ASSERT_EQ(tb::run_bench_serve(o), 0);
  std::ifstream f(o.output_json);
  const json j = json::parse(f);
  std::filesystem::remove(o.output_json);
  std::filesystem::remove(ds);
  EXPECT_EQ(j["completed"], 4);
  EXPECT_EQ(j["total_output_tokens"], 2 + 3 + 2 + 3);
  // The role chunk is no token: n token chunks give n - 1 gaps, and TTFT is the first token's.
  std::multiset<size_t> gaps;
  for (const auto& itl : j["itls"]) gaps.insert(itl.size());
  EXPECT_EQ(gaps, (std::multiset<size_t>{1, 1, 2, 2}));
  for (const auto& ttft : j["ttfts"]) EXPECT_GE(ttft.get<double>(), 0.001);  // the first token after a 2 ms sleep
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 5u);
  std::multiset<std::string> contents;  // arrival order at the server may differ from send order
  for (size_t i = 1; i < bodies.size(); ++i) contents.insert(bodies[i]["messages"][0]["content"].get<std::string>());
  EXPECT_EQ(contents, (std::multiset<std::string>{"hello there", "hello there", "what is 2+2?", "what is 2+2?"}));
}

TEST(BenchServe, FailuresAreReportedNotHidden) {
  TinyServer server(429);
  tb::BenchServeOptions o;
  o.port = server.port();
  o.num_prompts = 3;
  o.random_input_len = 4;
  o.random_output_len = 2;
  try {
    tb::run_bench_serve(o);
    FAIL() << "the warm-up should have failed";
  } catch (const tessera::Error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP 429"), std::string::npos) << e.what();
  }
  o.warmup = false;
  EXPECT_EQ(tb::run_bench_serve(o), 1);  // every request failed
}

TEST(BenchServe, BadOptions) {
  tb::BenchServeOptions o;
  o.port = 1;  // nothing listens there
  o.num_prompts = 1;
  EXPECT_THROW(tb::run_bench_serve(o), tessera::Error);
  o.endpoint = "/v2/other";
  EXPECT_THROW(tb::run_bench_serve(o), tessera::Error);
  o.endpoint = "/v1/completions";
  o.goodput = {"speed:1"};
  EXPECT_THROW(tb::run_bench_serve(o), tessera::Error);
  o.goodput = {};
  o.dataset = "/nonexistent.jsonl";
  EXPECT_THROW(tb::run_bench_serve(o), tessera::Error);
}
