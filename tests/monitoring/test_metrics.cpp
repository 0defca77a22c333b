// tests/monitoring/test_metrics.cpp — the exposition parses under a strict reader of the Prometheus text
// format, every family is there with its vLLM bucket edges and the model_name label, and counters and
// histogram counts add up to the calls made (also from several threads at once).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <sstream>
#include <optional>
#include <set>
#include <thread>

#include "monitoring/metrics.h"

namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family → counter | gauge | histogram
  std::map<std::string, std::string> help;
  std::vector<Sample> samples;

  // The samples of `name` whose labels include all of `match`.
  std::vector<Sample> find(const std::string& name, const std::map<std::string, std::string>& match = {}) const {
    std::vector<Sample> out;
    for (const auto& s : samples) {
      if (s.name != name) continue;
      bool ok = true;
      for (const auto& [k, v] : match) ok = ok && s.labels.count(k) && s.labels.at(k) == v;
      if (ok) out.push_back(s);
    }
    return out;
  }
  double value(const std::string& name, const std::map<std::string, std::string>& match = {}) const {
    auto v = find(name, match);
    EXPECT_EQ(v.size(), 1u) << name;
    return v.empty() ? NAN : v[0].value;
  }
};

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool is_name_char(char c) { return is_name_start(c) || std::isdigit(static_cast<unsigned char>(c)); }

// A strict reader of text format 0.0.4: any line it does not understand is a test failure, with the line.
Exposition parse(const std::string& text) {
  Exposition e;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    EXPECT_NE(nl, std::string::npos) << "the exposition must end with a newline";
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    auto fail = [&](const std::string& why) { ADD_FAILURE() << "line " << line_no << ": " << why << ": " << line; };
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream is(line);
      std::string hash, kind, name;
      is >> hash >> kind >> name;
      if (kind == "TYPE") {
        std::string type;
        is >> type;
        if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" && type != "untyped")
          fail("bad type");
        if (e.types.count(name)) fail("family declared twice");
        e.types[name] = type;
      } else if (kind == "HELP") {
        e.help[name] = line;
      } else {
        fail("unknown comment");
      }
      continue;
    }
    Sample s;
    size_t i = 0;
    if (!is_name_start(line[i])) {
      fail("bad metric name");
      continue;
    }
    while (i < line.size() && is_name_char(line[i])) s.name += line[i++];
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string key, value;
        if (!is_name_start(line[i])) break;
        while (i < line.size() && is_name_char(line[i])) key += line[i++];
        if (line.compare(i, 2, "=\"") != 0) break;
        i += 2;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (i >= line.size()) break;
            const char n = line[i++];
            if (n == 'n')
              value += '\n';
            else if (n == '\\' || n == '"')
              value += n;
            else
              fail("bad escape");
          } else {
            value += c;
          }
        }
        if (!closed) break;
        if (s.labels.count(key)) fail("label twice");
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size() || line[i] != '}') {
        fail("bad label set");
        continue;
      }
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') {
      fail("no space before the value");
      continue;
    }
    ++i;
    std::string value = line.substr(i);
    if (const size_t sp = value.find(' '); sp != std::string::npos) {  // an optional integer timestamp
      const std::string ts = value.substr(sp + 1);
      if (ts.empty() || ts.find_first_not_of("-0123456789") != std::string::npos) fail("bad timestamp");
      value = value.substr(0, sp);
    }
    if (value == "+Inf") {
      s.value = INFINITY;
    } else if (value == "-Inf") {
      s.value = -INFINITY;
    } else if (value == "NaN") {
      s.value = NAN;
    } else {
      size_t used = 0;
      try {
        s.value = std::stod(value, &used);
      } catch (...) {
        used = 0;
      }
      if (used != value.size() || value.empty()) fail("bad value");
    }
    e.samples.push_back(s);
  }
  // Every sample belongs to a declared family; histogram buckets are cumulative and end at +Inf = _count.
  for (const auto& s : e.samples) {
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string suf(suffix);
      if (!e.types.count(family) && family.size() > suf.size() &&
          family.compare(family.size() - suf.size(), suf.size(), suf) == 0) {
        const std::string base = family.substr(0, family.size() - suf.size());
        if (e.types.count(base) && e.types.at(base) == "histogram") family = base;
      }
    }
    EXPECT_TRUE(e.types.count(family)) << s.name << " has no # TYPE line";
    EXPECT_TRUE(e.help.count(family)) << s.name << " has no # HELP line";
  }
  for (const auto& [family, type] : e.types) {
    if (type != "histogram") continue;
    // Group the buckets of each series by their labels without "le".
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> series;
    for (const auto& s : e.find(family + "_bucket")) {
      auto labels = s.labels;
      EXPECT_TRUE(labels.count("le")) << family;
      const std::string le = labels["le"];
      labels.erase("le");
      series[labels].push_back({le == "+Inf" ? INFINITY : std::stod(le), s.value});
    }
    for (const auto& [labels, buckets] : series) {
      for (size_t b = 1; b < buckets.size(); ++b) {
        EXPECT_LT(buckets[b - 1].first, buckets[b].first) << family << ": bucket edges not increasing";
        EXPECT_LE(buckets[b - 1].second, buckets[b].second) << family << ": buckets not cumulative";
      }
      EXPECT_FALSE(buckets.empty()) << family;
      if (buckets.empty()) continue;
      EXPECT_TRUE(std::isinf(buckets.back().first)) << family << ": the last bucket is not +Inf";
      double count = NAN;
      for (const auto& s : e.find(family + "_count"))
        if (auto l = s.labels; l == labels) count = s.value;
      EXPECT_EQ(buckets.back().second, count) << family << ": +Inf bucket != _count";
    }
  }
  return e;
}

std::vector<double> edges(const Exposition& e, const std::string& family) {
  std::vector<double> out;
  for (const auto& s : e.find(family + "_bucket"))
    if (s.labels.at("le") != "+Inf") out.push_back(std::stod(s.labels.at("le")));
  return out;
}

// The count of observations <= le in one histogram series.
double bucket(const Exposition& e, const std::string& family, const std::string& le,
              std::map<std::string, std::string> match = {}) {
  match["le"] = le;
  return e.value(family + "_bucket", match);
}

const char* const kFamilies[] = {
    "tessera_num_requests_running",        "tessera_num_requests_waiting",
    "tessera_kv_cache_usage_perc",         "tessera_ready",
    "tessera_prompt_tokens_total",         "tessera_generation_tokens_total",
    "tessera_request_success_total",       "tessera_time_to_first_token_seconds",
    "tessera_inter_token_latency_seconds", "tessera_e2e_request_latency_seconds",
    "tessera_request_queue_time_seconds",  "tessera_request_prefill_time_seconds",
    "tessera_request_decode_time_seconds", "tessera_request_prompt_tokens",
    "tessera_request_generation_tokens",   "tessera_iteration_tokens",
    "tessera_prefill_padding_tokens",      "tessera_rank_step_seconds",
    "tessera_allreduce_seconds",           "tessera_http_requests_total",
};

}  // namespace

TEST(Metrics, FreshExpositionParsesWithEveryFamily) {
  tessera::monitoring::Metrics m("smollm2");
  Exposition e = parse(m.exposition());
  // Families whose series carry a label beyond model_name (rank, route/status) appear with their first series.
  for (const char* f : {"tessera_rank_step_seconds", "tessera_allreduce_seconds", "tessera_http_requests_total",
                        "tessera_http_request_duration_seconds"})
    EXPECT_FALSE(e.types.count(f)) << f;
  m.observe_rank_step_time(0, 0.01);
  m.observe_allreduce_time(0, 0.001);
  m.count_http_request("/health", 200);
  m.observe_http_duration("/health", 0.002);
  e = parse(m.exposition());
  for (const char* f : kFamilies) EXPECT_TRUE(e.types.count(f)) << f;
  EXPECT_EQ(e.value("tessera_http_request_duration_seconds_count", {{"route", "/health"}}), 1.0);
  EXPECT_EQ(e.value("tessera_http_request_duration_seconds_bucket", {{"route", "/health"}, {"le", "0.0025"}}), 1.0);
  // The process families (Prometheus' standard names, no labels), read from /proc at the scrape.
  EXPECT_EQ(e.types.at("process_cpu_seconds_total"), "counter");
  EXPECT_GT(e.value("process_resident_memory_bytes"), 1e6);
  EXPECT_GT(e.value("process_open_fds"), 2.0);
  EXPECT_GE(e.value("process_max_fds"), e.value("process_open_fds"));
  EXPECT_GE(e.value("process_threads"), 1.0);
  EXPECT_GT(e.value("process_start_time_seconds"), 1.7e9);
  EXPECT_EQ(e.types.at("tessera_request_success_total"), "counter");
  EXPECT_EQ(e.types.at("tessera_num_requests_running"), "gauge");
  EXPECT_EQ(e.types.at("tessera_time_to_first_token_seconds"), "histogram");
  for (const auto& s : e.samples) {
    if (s.name.rfind("process_", 0) == 0)
      EXPECT_TRUE(s.labels.empty()) << s.name;
    else
      EXPECT_EQ(s.labels.count("model_name") ? s.labels.at("model_name") : "", "smollm2") << s.name;
  }
  // Finish reasons exist at zero before the first request, as in vLLM (rate() needs the series).
  for (const char* r : {"stop", "length", "abort", "error"})
    EXPECT_EQ(e.value("tessera_request_success_total", {{"finished_reason", r}}), 0.0) << r;
  EXPECT_EQ(e.value("tessera_ready"), 0.0);
}

TEST(Metrics, BucketEdgesAreVllms) {
  tessera::monitoring::Metrics m("x", 2048);
  const Exposition e = parse(m.exposition());
  EXPECT_EQ(edges(e, "tessera_time_to_first_token_seconds"),
            (std::vector<double>{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                                 1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}));
  EXPECT_EQ(edges(e, "tessera_inter_token_latency_seconds"),
            (std::vector<double>{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                                 10.0, 20.0, 40.0, 80.0}));
  const std::vector<double> latency = {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                       30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  for (const char* f : {"tessera_e2e_request_latency_seconds", "tessera_request_queue_time_seconds",
                        "tessera_request_prefill_time_seconds", "tessera_request_decode_time_seconds"})
    EXPECT_EQ(edges(e, f), latency) << f;
  EXPECT_EQ(edges(e, "tessera_iteration_tokens"),
            (std::vector<double>{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}));
  // build_1_2_5_buckets(max_model_len)
  EXPECT_EQ(edges(e, "tessera_request_prompt_tokens"),
            (std::vector<double>{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}));
  EXPECT_EQ(edges(e, "tessera_request_generation_tokens"), edges(e, "tessera_request_prompt_tokens"));
}

TEST(Metrics, CountsAddUpAfterKnownCalls) {
  tessera::monitoring::Metrics m("tiny");
  m.set_running(3);
  m.set_waiting(7);
  m.set_kv_usage(0.375);
  m.set_ready(true);
  m.add_prompt_tokens(10);
  m.add_prompt_tokens(5);
  m.add_prompt_tokens(0);
  m.add_generation_tokens(42);
  for (int i = 0; i < 3; ++i) m.request_finished("stop");
  m.request_finished("length");
  m.request_finished("length");
  m.request_finished("abort");
  m.request_finished("error");
  m.request_finished("bogus");  // counted as error
  m.observe_ttft(0.003);
  m.observe_ttft(0.05);
  m.observe_ttft(3.0);
  for (int i = 0; i < 10; ++i) m.observe_itl(0.02);
  m.observe_e2e(0.4);
  m.observe_queue_time(0.0);
  m.observe_prefill_time(0.2);
  m.observe_decode_time(1.2);
  m.observe_prompt_len(15);
  m.observe_generation_len(42);
  m.observe_tokens_per_step(20);
  m.observe_tokens_per_step(1);
  m.observe_padding_tokens(0);
  m.observe_padding_tokens(30);
  m.observe_rank_step_time(0, 0.004);
  m.observe_rank_step_time(2, 0.006);
  m.observe_rank_step_time(2, 0.007);
  m.observe_allreduce_time(1, 0.0003);
  m.count_http_request("/v1/completions", 200);
  m.count_http_request("/v1/completions", 200);
  m.count_http_request("/v1/completions", 429);
  m.count_http_request("/health", 200);

  const Exposition e = parse(m.exposition());
  EXPECT_EQ(e.value("tessera_num_requests_running"), 3);
  EXPECT_EQ(e.value("tessera_num_requests_waiting"), 7);
  EXPECT_EQ(e.value("tessera_kv_cache_usage_perc"), 0.375);
  EXPECT_EQ(e.value("tessera_ready"), 1);
  EXPECT_EQ(e.value("tessera_prompt_tokens_total"), 15);
  EXPECT_EQ(e.value("tessera_generation_tokens_total"), 42);
  EXPECT_EQ(e.value("tessera_request_success_total", {{"finished_reason", "stop"}}), 3);
  EXPECT_EQ(e.value("tessera_request_success_total", {{"finished_reason", "length"}}), 2);
  EXPECT_EQ(e.value("tessera_request_success_total", {{"finished_reason", "abort"}}), 1);
  EXPECT_EQ(e.value("tessera_request_success_total", {{"finished_reason", "error"}}), 2);

  const std::string ttft = "tessera_time_to_first_token_seconds";
  EXPECT_EQ(e.value(ttft + "_count"), 3);
  EXPECT_NEAR(e.value(ttft + "_sum"), 3.053, 1e-9);
  EXPECT_EQ(bucket(e, ttft, "0.001"), 0);
  EXPECT_EQ(bucket(e, ttft, "0.005"), 1);
  EXPECT_EQ(bucket(e, ttft, "0.06"), 2);
  EXPECT_EQ(bucket(e, ttft, "2.5"), 2);
  EXPECT_EQ(bucket(e, ttft, "5"), 3);
  EXPECT_EQ(bucket(e, ttft, "+Inf"), 3);
  EXPECT_EQ(e.value("tessera_inter_token_latency_seconds_count"), 10);
  EXPECT_EQ(bucket(e, "tessera_inter_token_latency_seconds", "0.025"), 10);
  EXPECT_EQ(bucket(e, "tessera_inter_token_latency_seconds", "0.01"), 0);
  EXPECT_EQ(e.value("tessera_e2e_request_latency_seconds_count"), 1);
  EXPECT_EQ(bucket(e, "tessera_request_queue_time_seconds", "0.3"), 1);
  EXPECT_EQ(e.value("tessera_request_prefill_time_seconds_count"), 1);
  EXPECT_EQ(bucket(e, "tessera_request_decode_time_seconds", "1"), 0);
  EXPECT_EQ(bucket(e, "tessera_request_decode_time_seconds", "1.5"), 1);
  EXPECT_EQ(e.value("tessera_request_prompt_tokens_sum"), 15);
  EXPECT_EQ(e.value("tessera_request_generation_tokens_sum"), 42);
  EXPECT_EQ(e.value("tessera_iteration_tokens_count"), 2);
  EXPECT_EQ(bucket(e, "tessera_iteration_tokens", "1"), 1);
  EXPECT_EQ(e.value("tessera_prefill_padding_tokens_sum"), 30);
  EXPECT_EQ(bucket(e, "tessera_prefill_padding_tokens", "1"), 1);

  EXPECT_EQ(e.value("tessera_rank_step_seconds_count", {{"rank", "0"}}), 1);
  EXPECT_EQ(e.value("tessera_rank_step_seconds_count", {{"rank", "2"}}), 2);
  EXPECT_NEAR(e.value("tessera_rank_step_seconds_sum", {{"rank", "2"}}), 0.013, 1e-12);
  EXPECT_TRUE(e.find("tessera_rank_step_seconds_count", {{"rank", "1"}}).empty());
  EXPECT_EQ(e.value("tessera_allreduce_seconds_count", {{"rank", "1"}}), 1);
  for (const auto& s : e.find("tessera_rank_step_seconds_count")) EXPECT_EQ(s.labels.at("model_name"), "tiny");

  EXPECT_EQ(e.value("tessera_http_requests_total", {{"route", "/v1/completions"}, {"status", "200"}}), 2);
  EXPECT_EQ(e.value("tessera_http_requests_total", {{"route", "/v1/completions"}, {"status", "429"}}), 1);
  EXPECT_EQ(e.value("tessera_http_requests_total", {{"route", "/health"}, {"status", "200"}}), 1);
  m.set_ready(false);
  EXPECT_EQ(parse(m.exposition()).value("tessera_ready"), 0);
}

TEST(Metrics, HttpRouteCardinalityIsBounded) {
  tessera::monitoring::Metrics m("x");
  for (int i = 0; i < 1000; ++i) m.count_http_request("/probe/" + std::to_string(i), 404);
  const Exposition e = parse(m.exposition());
  const auto series = e.find("tessera_http_requests_total");
  EXPECT_LE(series.size(), 257u);
  double total = 0;
  for (const auto& s : series) total += s.value;
  EXPECT_EQ(total, 1000);
  EXPECT_GT(e.value("tessera_http_requests_total", {{"route", "other"}, {"status", "404"}}), 0);
}

TEST(Metrics, ModelNameIsEscaped) {
  tessera::monitoring::Metrics m("we\"ird\\name");
  m.add_prompt_tokens(1);
  const Exposition e = parse(m.exposition());
  EXPECT_EQ(e.value("tessera_prompt_tokens_total", {{"model_name", "we\"ird\\name"}}), 1);
}

TEST(Metrics, ConcurrentCallsAddUp) {
  tessera::monitoring::Metrics m("x");
  std::vector<std::thread> threads;
  constexpr int kThreads = 4, kIters = 2000;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        m.add_generation_tokens(1);
        m.request_finished("stop");
        m.observe_itl(0.001 * (i % 50));
        m.observe_rank_step_time(i % 3, 0.001);
        m.count_http_request(t % 2 ? "/v1/completions" : "/v1/chat/completions", 200);
        if (i % 500 == 0) parse(m.exposition());  // scrapes while the counters move
      }
    });
  }
  for (auto& th : threads) th.join();
  const Exposition e = parse(m.exposition());
  EXPECT_EQ(e.value("tessera_generation_tokens_total"), kThreads * kIters);
  EXPECT_EQ(e.value("tessera_request_success_total", {{"finished_reason", "stop"}}), kThreads * kIters);
  EXPECT_EQ(e.value("tessera_inter_token_latency_seconds_count"), kThreads * kIters);
  double steps = 0;
  for (const auto& s : e.find("tessera_rank_step_seconds_count")) steps += s.value;
  EXPECT_EQ(steps, kThreads * kIters);
  EXPECT_EQ(e.value("tessera_http_requests_total", {{"route", "/v1/completions"}}), kThreads / 2 * kIters);
}
