// tests/coordinator/test_scheduler_engine.cpp — the scheduler over the real engine (LocalDispatcher + CpuRunner
// over a Transformer) on the tiny Hugging Face checkpoint llama_gqa_untied (vocab 256, context 128; made by
// tests/python/make_oracles.py, fixture e2e_refs). Requests arrive from several threads while steps run:
// each request's tokens must equal what it gets alone (continuous batching and pre-padding change nothing),
// and cancel, timeouts, queue limits, drain and FIFO fairness behave as scheduler.h says.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

#include "coordinator/generate.h"
#include "coordinator/scheduler/scheduler.h"
#include "worker/engine.h"
#include "worker/model/transformer.h"
#if __has_include("monitoring/metrics.h")
#include "monitoring/metrics.h"
#define TESSERA_TEST_METRICS 1
#endif

namespace tessera::coordinator {
namespace {

using namespace std::chrono_literals;

std::string oracle_dir() {
  if (const char* v = std::getenv("TESSERA_ORACLES")) return std::string(v) + "/llama_gqa_untied";
#ifdef TESSERA_ORACLES
  return std::string(TESSERA_ORACLES) + "/llama_gqa_untied";
#else
  return {};
#endif
}

std::atomic<int64_t> g_event_clock{0};  // orders first tokens across requests

// Records one request's events; optional pacing (a slow client) to make timing tests deterministic.
class RecordingSink final : public RequestSink {
 public:
  explicit RecordingSink(int n, std::chrono::microseconds per_token = 0us)
      : tokens(n), logprobs(n), finishes(n, 0), reasons(n), messages(n), per_token_(per_token) {}
  TokenVerdict on_token(const TokenEvent& ev) override {
    if (per_token_ > 0us) std::this_thread::sleep_for(per_token_);
    std::lock_guard lk(mu_);
    if (first_token_at < 0) first_token_at = g_event_clock.fetch_add(1);
    tokens[static_cast<size_t>(ev.seq)].push_back(ev.token);
    logprobs[static_cast<size_t>(ev.seq)].push_back(ev.logprob);
    ++n_tokens_;
    cv_.notify_all();
    return TokenVerdict::kContinue;
  }
  void on_finish(int32_t seq, FinishReason r, const std::string& m) override {
    std::lock_guard lk(mu_);
    ++finishes[static_cast<size_t>(seq)];
    reasons[static_cast<size_t>(seq)] = r;
    messages[static_cast<size_t>(seq)] = m;
    ++n_finished_;
    cv_.notify_all();
  }
  bool wait_finished(std::chrono::milliseconds timeout = 60000ms) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return n_finished_ >= static_cast<int>(finishes.size()); });
  }
  bool wait_tokens(int n, std::chrono::milliseconds timeout = 60000ms) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return n_tokens_ >= n; });
  }
  int n_tokens() {
    std::lock_guard lk(mu_);
    return n_tokens_;
  }

  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<float>> logprobs;
  std::vector<int> finishes;
  std::vector<FinishReason> reasons;
  std::vector<std::string> messages;
  int64_t first_token_at = -1;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_tokens_ = 0, n_finished_ = 0;
  std::chrono::microseconds per_token_;
};

// Wraps the real dispatcher and keeps the shape of every plan (to show batching and padding happened).
class SpyDispatcher final : public parallel::Dispatcher {
 public:
  explicit SpyDispatcher(parallel::Dispatcher& inner) : inner_(inner) {}
  parallel::StepResult run(const parallel::StepPlan& plan) override {
    {
      std::lock_guard lk(mu);
      if (plan.kind == parallel::StepPlan::Kind::kStep) {
        int64_t pad = 0;
        for (int32_t p : plan.prefill_pad) pad += p;
        shapes.push_back({static_cast<int>(plan.prefill_pad.size()), static_cast<int>(plan.decode_tokens.size()), pad});
      }
    }
    return inner_.run(plan);
  }
  int tp_size() const override { return 1; }
  struct Shape {
    int prefill_rows, decode_rows;
    int64_t pad;
  };
  std::mutex mu;
  std::vector<Shape> shapes;

 private:
  parallel::Dispatcher& inner_;
};

class SchedulerEngine : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = oracle_dir();
    if (dir.empty()) return;
    model_ = new worker::Transformer(model::load_weights(dir));
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    if (!model_) GTEST_SKIP() << "TESSERA_ORACLES is not set (configure with -DTESSERA_PYTHON=<venv python>)";
  }
  void TearDown() override { stop_scheduler(); }

  SchedulerOptions options(int32_t n_slots) const {
    SchedulerOptions o;
    o.n_slots = n_slots;
    o.max_ctx = static_cast<int32_t>(model_->config().max_ctx);
    o.max_waiting = 256;
    o.vocab = model_->config().vocab;
    return o;
  }
  // The scheduler with its own runner (KV cache) over the shared weights, run() on a thread.
  void start_scheduler(SchedulerOptions o, bool start_thread = true, monitoring::Metrics* metrics = nullptr) {
    runner_ = std::make_unique<worker::CpuRunner>(*model_);
    local_ = std::make_unique<worker::LocalDispatcher>(*runner_);
    spy_ = std::make_unique<SpyDispatcher>(*local_);
    sched_ = std::make_unique<Scheduler>(*spy_, o, metrics);
    if (start_thread) start_thread_now();
  }
  void start_thread_now() {
    thread_ = std::thread([this] {
      try {
        sched_->run();
      } catch (const std::exception& e) {
        run_error_ = e.what();
      }
    });
  }
  void stop_scheduler() {
    if (sched_) sched_->stop();
    if (thread_.joinable()) thread_.join();
    EXPECT_EQ(run_error_, "");
  }
  // What a request gets alone: the simple batch loop, one request, its own KV cache.
  std::vector<int32_t> alone(const std::vector<int32_t>& prompt, int32_t max_tokens, SamplingParams sp,
                             std::vector<int32_t> stop_ids = {}) {
    worker::CpuRunner runner(*model_);
    worker::LocalDispatcher d(runner);
    GenerateRequest g;
    g.prompt = prompt;
    g.max_tokens = max_tokens;
    g.sampling = sp;
    g.stop_ids = std::move(stop_ids);
    return generate(d, {model_->config().vocab, model_->config().max_ctx}, {g})[0].tokens;
  }
  std::shared_ptr<Request> request(std::vector<int32_t> prompt, int32_t max_tokens, std::shared_ptr<RecordingSink> sink,
                                   float temperature = 0.0f, uint64_t seed = 0, int32_t n = 1) {
    auto r = std::make_shared<Request>();
    r->id = next_id_++;
    r->prompt = std::move(prompt);
    r->max_tokens = max_tokens;
    r->n = n;
    r->sampling.temperature = temperature;
    r->sampling.top_p = temperature > 0 ? 0.95f : 1.0f;
    r->sampling.seed = seed;
    r->sink = std::move(sink);
    return r;
  }
  // 32 sequence slots over KV blocks of 4 tokens (many blocks per request), prefix caching on or off.
  SchedulerOptions small_blocks(bool prefix_caching) const {
    SchedulerOptions o = options(32);
    o.block_size = 4;
    o.prefix_caching = prefix_caching;
    return o;
  }
  // request()'s sampling settings, for alone().
  static SamplingParams sampling(float temperature, uint64_t seed) {
    SamplingParams sp;
    sp.temperature = temperature;
    sp.top_p = temperature > 0 ? 0.95f : 1.0f;
    sp.seed = seed;
    return sp;
  }
  static std::vector<int32_t> random_prompt(std::mt19937& rng, int len) {
    std::uniform_int_distribution<int32_t> tok(0, 255);
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (auto& t : p) t = tok(rng);
    return p;
  }
  // Waits (bounded) until the published stats satisfy pred.
  bool wait_stats(const std::function<bool(const SchedulerStats&)>& pred) {
    for (int i = 0; i < 2000; ++i) {
      if (pred(sched_->stats())) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  static inline worker::Transformer* model_ = nullptr;
  std::unique_ptr<worker::CpuRunner> runner_;
  std::unique_ptr<worker::LocalDispatcher> local_;
  std::unique_ptr<SpyDispatcher> spy_;
  std::unique_ptr<Scheduler> sched_;
  std::thread thread_;
  std::string run_error_;
  std::atomic<uint64_t> next_id_{1};  // submitted from several threads
};

TEST_F(SchedulerEngine, SixtyFourConcurrentGreedyRequestsGetTheirTokensAlone) {
  std::mt19937 rng(2024);
  struct Case {
    std::vector<int32_t> prompt;
    int32_t max_tokens;
    std::vector<int32_t> stop_ids, expect;
    FinishReason reason;
  };
  std::vector<Case> cases(64);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  for (size_t i = 0; i < cases.size(); ++i) {
    Case& c = cases[i];
    c.prompt = random_prompt(rng, 1 + static_cast<int>(rng() % 60));
    c.max_tokens = 1 + static_cast<int32_t>(rng() % 24);
    c.expect = alone(c.prompt, c.max_tokens, greedy);
    c.reason = FinishReason::kLength;
    if (i % 4 == 1 && c.expect.size() >= 3) {  // end on a stop id: the third token
      c.stop_ids = {c.expect[2]};
      c.expect.resize(
          static_cast<size_t>(std::find(c.expect.begin(), c.expect.end(), c.stop_ids[0]) - c.expect.begin() + 1));
      c.reason = FinishReason::kStop;
    }
  }
  start_scheduler(options(8));
  std::vector<std::shared_ptr<RecordingSink>> sinks(cases.size());
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t)
    submitters.emplace_back([&, t] {
      std::mt19937 jitter(static_cast<uint32_t>(t));
      for (size_t i = static_cast<size_t>(t); i < cases.size(); i += 4) {
        sinks[i] = std::make_shared<RecordingSink>(1);
        auto r = request(cases[i].prompt, cases[i].max_tokens, sinks[i]);
        r->stop_ids = cases[i].stop_ids;
        std::string why;
        EXPECT_EQ(sched_->submit(r, &why), SubmitStatus::kAccepted) << why;
        std::this_thread::sleep_for(std::chrono::microseconds(jitter() % 800));
      }
    });
  for (auto& t : submitters) t.join();
  int64_t total_tokens = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(sinks[i]->wait_finished()) << "request " << i << " did not finish";
    EXPECT_EQ(sinks[i]->tokens[0], cases[i].expect)
        << "request " << i << " (prompt " << cases[i].prompt.size() << ", max_tokens " << cases[i].max_tokens << ")";
    EXPECT_EQ(sinks[i]->finishes[0], 1);
    EXPECT_EQ(sinks[i]->reasons[0], cases[i].reason) << "request " << i;
    for (float lp : sinks[i]->logprobs[0]) EXPECT_LE(lp, 0.0f);
    total_tokens += static_cast<int64_t>(sinks[i]->tokens[0].size());
  }
  ASSERT_TRUE(wait_stats([](const SchedulerStats& s) { return s.running == 0 && s.waiting == 0; }));
  EXPECT_EQ(sched_->stats().kv_usage, 0.0);
  // The batching really happened: fewer steps than tokens, groups of several padded prompts, and steps that
  // mixed a new group with running decodes.
  std::lock_guard lk(spy_->mu);
  int multi_row_padded_groups = 0, mixed_steps = 0;
  for (const auto& s : spy_->shapes) {
    if (s.prefill_rows > 1 && s.pad > 0) ++multi_row_padded_groups;
    if (s.prefill_rows > 0 && s.decode_rows > 0) ++mixed_steps;
  }
  EXPECT_LT(static_cast<int64_t>(spy_->shapes.size()), total_tokens / 2);
  EXPECT_GT(multi_row_padded_groups, 0);
  EXPECT_GT(mixed_steps, 0);
  RecordProperty("steps", std::to_string(spy_->shapes.size()));
  RecordProperty("tokens", std::to_string(total_tokens));
}

TEST_F(SchedulerEngine, SeededSamplingWithNSequencesMatchesEachSeedAlone) {
  std::mt19937 rng(77);
  struct Case {
    std::vector<int32_t> prompt;
    int32_t n;
    uint64_t seed;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 12; ++i)
    cases.push_back({random_prompt(rng, 2 + static_cast<int>(rng() % 40)), 1 + i % 3, 1000 + 10 * uint64_t(i)});
  start_scheduler(options(6));
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (const auto& c : cases) {
    sinks.push_back(std::make_shared<RecordingSink>(c.n));
    std::string why;
    ASSERT_EQ(sched_->submit(request(c.prompt, 12, sinks.back(), 0.9f, c.seed, c.n), &why), SubmitStatus::kAccepted)
        << why;
  }
  // The Transformer's scratch is not thread-safe: the alone runs wait until the scheduler is idle.
  for (size_t i = 0; i < cases.size(); ++i) ASSERT_TRUE(sinks[i]->wait_finished());
  for (size_t i = 0; i < cases.size(); ++i) {
    for (int32_t j = 0; j < cases[i].n; ++j) {
      SamplingParams sp;
      sp.temperature = 0.9f;
      sp.top_p = 0.95f;
      sp.seed = cases[i].seed + static_cast<uint64_t>(j);
      EXPECT_EQ(sinks[i]->tokens[static_cast<size_t>(j)], alone(cases[i].prompt, 12, sp))
          << "request " << i << " sequence " << j;
      EXPECT_EQ(sinks[i]->finishes[static_cast<size_t>(j)], 1);
    }
  }
  // Sequences of one request with different seeds do differ (else the test could not see a seed mix-up).
  bool any_differ = false;
  for (size_t i = 0; i < cases.size(); ++i)
    if (cases[i].n > 1 && sinks[i]->tokens[0] != sinks[i]->tokens[1]) any_differ = true;
  EXPECT_TRUE(any_differ);
}

TEST_F(SchedulerEngine, CancelMidGenerationFreesTheSlotForLaterRequests) {
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  const auto expect = alone({9, 8, 7}, 10, greedy);  // before the scheduler runs the shared model
  start_scheduler(options(2));
  auto slow = std::make_shared<RecordingSink>(1, 2ms);  // 2 ms per token: ~240 ms for 120 tokens
  auto r = request({1, 2, 3, 4, 5, 6, 7, 8}, 120, slow);
  ASSERT_EQ(sched_->submit(r, nullptr), SubmitStatus::kAccepted);
  ASSERT_TRUE(slow->wait_tokens(3));
  EXPECT_EQ(sched_->stats().running, 1);
  EXPECT_GT(sched_->stats().kv_usage, 0.0);
  r->cancel();
  ASSERT_TRUE(slow->wait_finished());
  EXPECT_EQ(slow->reasons[0], FinishReason::kAbort);
  EXPECT_EQ(slow->finishes[0], 1);
  EXPECT_LT(slow->n_tokens(), 20);  // left at the next step, far before max_tokens
  ASSERT_TRUE(wait_stats([](const SchedulerStats& s) { return s.running == 0 && s.kv_usage == 0.0; }));
  // Both slots serve new requests (one of them the cancelled request's).
  auto a = std::make_shared<RecordingSink>(2);
  ASSERT_EQ(sched_->submit(request({9, 8, 7}, 10, a, 0.0f, 0, 2), nullptr), SubmitStatus::kAccepted);
  ASSERT_TRUE(a->wait_finished());
  EXPECT_EQ(a->tokens[0], expect);
  EXPECT_EQ(a->tokens[1], expect);
}

TEST_F(SchedulerEngine, QueueFullIsRefusedAndStopAbortsWhatWaits) {
  SchedulerOptions o = options(2);
  o.max_waiting = 2;
  start_scheduler(o, /*start_thread=*/false);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 2; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>(1));
    ASSERT_EQ(sched_->submit(request({1, 2, 3}, 4, sinks.back()), nullptr), SubmitStatus::kAccepted);
  }
  std::string why;
  EXPECT_EQ(sched_->submit(request({1, 2, 3}, 4, std::make_shared<RecordingSink>(1)), &why), SubmitStatus::kQueueFull);
  EXPECT_NE(why.find("full"), std::string::npos) << why;
  EXPECT_EQ(sched_->stats().waiting, 2);
  sched_->stop();
  sched_->run();  // configures, sees stop, aborts the waiting requests, returns
  for (auto& s : sinks) {
    EXPECT_EQ(s->finishes[0], 1);
    EXPECT_EQ(s->reasons[0], FinishReason::kAbort);
  }
  EXPECT_EQ(sched_->submit(request({1}, 1, std::make_shared<RecordingSink>(1)), &why), SubmitStatus::kDraining);
}

TEST_F(SchedulerEngine, InvalidRequestsAreRefusedWithAReason) {
  start_scheduler(options(2), /*start_thread=*/false);
  auto sink = std::make_shared<RecordingSink>(1);
  std::string why;
  EXPECT_EQ(sched_->submit(request(std::vector<int32_t>(100, 1), 50, sink), &why), SubmitStatus::kInvalid);
  EXPECT_NE(why.find("context length 128"), std::string::npos) << why;
  EXPECT_EQ(sched_->submit(request({}, 4, sink), &why), SubmitStatus::kInvalid);
  EXPECT_NE(why.find("empty"), std::string::npos) << why;
  EXPECT_EQ(sched_->submit(request({1, 256}, 4, sink), &why), SubmitStatus::kInvalid);
  EXPECT_NE(why.find("256"), std::string::npos) << why;
  EXPECT_EQ(sched_->submit(request({1}, 4, sink, 0.0f, 0, 3), &why), SubmitStatus::kInvalid);  // n > n_slots
  EXPECT_NE(why.find("n must be"), std::string::npos) << why;
  EXPECT_EQ(sched_->submit(request({1}, 0, sink), &why), SubmitStatus::kInvalid);
  EXPECT_EQ(sched_->submit(request({1}, 4, sink, -1.0f), &why), SubmitStatus::kInvalid);
  EXPECT_NE(why.find("temperature"), std::string::npos) << why;
  EXPECT_EQ(sched_->submit(request({1}, 4, nullptr), &why), SubmitStatus::kInvalid);
  EXPECT_EQ(sched_->stats().waiting, 0);
  EXPECT_EQ(sched_->submit(request(std::vector<int32_t>(100, 1), 28, sink), &why), SubmitStatus::kAccepted) << why;
}

// A runner whose KV budget holds fewer slots than asked, as the CUDA pool does under backend.kv_memory_fraction
// (ModelRunner::configure's contract): the CPU runner, capped.
class CappedRunner final : public worker::ModelRunner {
 public:
  CappedRunner(worker::Transformer& model, int64_t cap) : inner_(model), cap_(cap) {}
  const model::ModelConfig& config() const override { return inner_.config(); }
  worker::KvGeometry configure(const worker::KvRequest& r) override {
    worker::KvRequest capped = r;
    capped.max_seqs = std::min(r.max_seqs, cap_);
    return inner_.configure(capped);
  }
  worker::KvGeometry kv_geometry() const override { return inner_.kv_geometry(); }
  std::vector<float> prefill(const worker::PrefillGroup& g) override { return inner_.prefill(g); }
  std::vector<float> decode(const std::vector<int32_t>& t, const worker::BlockTables& tables,
                            const std::vector<int32_t>& p) override {
    return inner_.decode(t, tables, p);
  }

 private:
  worker::CpuRunner inner_;
  int64_t cap_;
};

TEST_F(SchedulerEngine, RunsWithTheSlotsTheWorkersCouldAllocate) {
  CappedRunner runner(*model_, 2);
  worker::LocalDispatcher local(runner);
  SpyDispatcher spy(local);
  Scheduler sched(spy, options(4), nullptr);
  // Waiting before the cache exists: n = 3 fits the 4 slots asked for, not the 2 allocated.
  auto wide = std::make_shared<RecordingSink>(3);
  std::string why;
  ASSERT_EQ(sched.submit(request({1, 2, 3}, 4, wide, 0.0f, 0, 3), &why), SubmitStatus::kAccepted) << why;
  EXPECT_EQ(sched.configure(), 2);
  ASSERT_TRUE(wide->wait_finished(1000ms));
  EXPECT_EQ(wide->reasons[0], FinishReason::kError);
  EXPECT_NE(wide->messages[0].find("2 sequence slots"), std::string::npos) << wide->messages[0];
  EXPECT_EQ(sched.submit(request({1}, 4, wide, 0.0f, 0, 3), &why), SubmitStatus::kInvalid);
  EXPECT_NE(why.find("n must be in [1, 2]"), std::string::npos) << why;

  // Five requests through two slots: every one gets its tokens alone, never more than two rows in a step.
  std::thread loop([&] { sched.run(); });
  std::mt19937 rng(7);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 5; ++i) {
    prompts.push_back(random_prompt(rng, 3 + 4 * i));
    sinks.push_back(std::make_shared<RecordingSink>(1));
    ASSERT_EQ(sched.submit(request(prompts.back(), 6, sinks.back()), &why), SubmitStatus::kAccepted) << why;
  }
  for (auto& s : sinks) ASSERT_TRUE(s->wait_finished());
  sched.stop();
  loop.join();
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  for (size_t i = 0; i < sinks.size(); ++i) EXPECT_EQ(sinks[i]->tokens[0], alone(prompts[i], 6, greedy)) << i;
  std::lock_guard lk(spy.mu);
  for (const auto& sh : spy.shapes) EXPECT_LE(sh.prefill_rows + sh.decode_rows, 2);
}

TEST_F(SchedulerEngine, DrainFinishesInFlightWorkAndRefusesNew) {
  start_scheduler(options(2));
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 6; ++i) {  // more than the slots: some are still waiting when the drain begins
    sinks.push_back(std::make_shared<RecordingSink>(1, 200us));
    ASSERT_EQ(sched_->submit(request({1, 2, 3, int32_t(i)}, 16, sinks.back()), nullptr), SubmitStatus::kAccepted);
  }
  sched_->begin_drain();
  std::string why;
  EXPECT_EQ(sched_->submit(request({1, 2}, 4, std::make_shared<RecordingSink>(1)), &why), SubmitStatus::kDraining);
  thread_.join();  // run() returns on its own once nothing is in flight
  for (auto& s : sinks) {
    EXPECT_EQ(s->finishes[0], 1);
    EXPECT_EQ(s->reasons[0], FinishReason::kLength);
    EXPECT_EQ(s->tokens[0].size(), 16u);
  }
  EXPECT_EQ(sched_->stats().running, 0);
}

TEST_F(SchedulerEngine, TimeoutsAbortWaitingAndRunningRequests) {
  start_scheduler(options(2));
  auto late = std::make_shared<RecordingSink>(1);
  auto r = request({1, 2, 3}, 10, late);
  r->deadline = SteadyClock::now() - 1ms;  // already expired: never runs
  ASSERT_EQ(sched_->submit(r, nullptr), SubmitStatus::kAccepted);
  ASSERT_TRUE(late->wait_finished());
  EXPECT_EQ(late->reasons[0], FinishReason::kAbort);
  EXPECT_TRUE(late->tokens[0].empty());

  auto slow = std::make_shared<RecordingSink>(1, 2ms);
  auto r2 = request({4, 5, 6}, 120, slow);
  r2->deadline = SteadyClock::now() + 60ms;
  ASSERT_EQ(sched_->submit(r2, nullptr), SubmitStatus::kAccepted);
  ASSERT_TRUE(slow->wait_finished());
  EXPECT_EQ(slow->reasons[0], FinishReason::kAbort);
  EXPECT_EQ(slow->messages[0], "request timed out");
  EXPECT_GE(slow->tokens[0].size(), 1u);
  EXPECT_LT(slow->tokens[0].size(), 120u);
  ASSERT_TRUE(wait_stats([](const SchedulerStats& s) { return s.running == 0 && s.kv_usage == 0.0; }));
}

TEST_F(SchedulerEngine, AnOldLongPromptIsNotStarvedByAStreamOfShortOnes) {
  SchedulerOptions o = options(2);
  o.max_pad_fraction = 0.0;  // short prompts group only with each other: a length-greedy policy would starve LONG
  start_scheduler(o, /*start_thread=*/false);
  std::mt19937 rng(5);
  std::vector<std::shared_ptr<RecordingSink>> shorts;
  auto submit_short = [&](int max_tokens) {
    shorts.push_back(std::make_shared<RecordingSink>(1));
    EXPECT_EQ(sched_->submit(request(random_prompt(rng, 4), max_tokens, shorts.back()), nullptr),
              SubmitStatus::kAccepted);
  };
  submit_short(20);  // these two take both slots first
  submit_short(20);
  auto long_sink = std::make_shared<RecordingSink>(1);
  ASSERT_EQ(sched_->submit(request(random_prompt(rng, 60), 8, long_sink), nullptr), SubmitStatus::kAccepted);
  const size_t first_younger = shorts.size();
  for (int i = 0; i < 10; ++i) submit_short(20);
  start_thread_now();
  std::thread stream([&] {  // more short ones keep arriving while it runs
    for (int i = 0; i < 20; ++i) {
      submit_short(20);
      std::this_thread::sleep_for(500us);
    }
  });
  stream.join();
  ASSERT_TRUE(long_sink->wait_finished());
  EXPECT_EQ(long_sink->reasons[0], FinishReason::kLength);
  for (size_t i = 0; i < shorts.size(); ++i) ASSERT_TRUE(shorts[i]->wait_finished());
  for (size_t i = first_younger; i < shorts.size(); ++i)
    EXPECT_LT(long_sink->first_token_at, shorts[i]->first_token_at) << "short request " << i << " overtook it";
}

// 32 requests sharing a 45-token prefix (blocks of 4 tokens: 11 whole blocks), half greedy, half seeded.
struct SharedPrefixCase {
  std::vector<int32_t> prompt;
  int32_t max_tokens;
  float temperature;
  uint64_t seed;
  std::vector<int32_t> expect;
};

// Prefix caching changes which positions a prefill computes, never a sampled token: each request submitted after
// the previous one finished (so it finds their blocks cached), then all 32 at once (each finds its whole prompt but
// the last block), with caching on and off: every one gets its tokens alone. Hits are counted in tokens.
TEST_F(SchedulerEngine, PrefixCachingChangesNoTokenAloneOrInABatchOf32) {
  std::mt19937 rng(1313);
  const auto prefix = random_prompt(rng, 45);
  std::vector<SharedPrefixCase> cases;
  for (int i = 0; i < 32; ++i) {
    SharedPrefixCase c;
    c.prompt = prefix;
    const auto suffix = random_prompt(rng, 1 + i % 13);
    c.prompt.insert(c.prompt.end(), suffix.begin(), suffix.end());
    c.max_tokens = 6 + i % 9;
    c.temperature = i % 2 == 0 ? 0.0f : 0.8f;
    c.seed = 500 + static_cast<uint64_t>(i);
    c.expect = alone(c.prompt, c.max_tokens, sampling(c.temperature, c.seed));
    cases.push_back(std::move(c));
  }
  for (bool caching : {false, true}) {
    SCOPED_TRACE(caching ? "prefix caching on" : "prefix caching off");
    SchedulerOptions o = small_blocks(caching);
    start_scheduler(o);
    auto submit = [&](const SharedPrefixCase& c) {
      auto sink = std::make_shared<RecordingSink>(1);
      std::string why;
      EXPECT_EQ(sched_->submit(request(c.prompt, c.max_tokens, sink, c.temperature, c.seed), &why),
                SubmitStatus::kAccepted)
          << why;
      return sink;
    };
    for (const auto& c : cases) {  // one after another
      auto sink = submit(c);
      ASSERT_TRUE(sink->wait_finished());
      EXPECT_EQ(sink->tokens[0], c.expect);
    }
    std::vector<std::shared_ptr<RecordingSink>> sinks;  // all at once
    for (const auto& c : cases) sinks.push_back(submit(c));
    for (size_t i = 0; i < cases.size(); ++i) {
      ASSERT_TRUE(sinks[i]->wait_finished());
      EXPECT_EQ(sinks[i]->tokens[0], cases[i].expect) << "request " << i << " of the batch";
    }
    ASSERT_TRUE(wait_stats([](const SchedulerStats& st) { return st.running == 0; }));
    const SchedulerStats st = sched_->stats();
    if (caching) {
      // The 31 later requests of the first pass find the prefix's 11 blocks; the second pass every whole block
      // of its prompt but the last token's.
      EXPECT_GE(st.prefix_cache_hits, 31u * 44u + 32u * 44u);
      EXPECT_GT(st.prefix_cache_queries, st.prefix_cache_hits);
    } else {
      EXPECT_EQ(st.prefix_cache_hits, 0u);
    }
    EXPECT_EQ(st.kv_usage, 0.0);  // every block back
    stop_scheduler();
    sched_.reset();
  }
}

// A KV cache of 24 blocks of 4 tokens (96 tokens) for 32 requests of 10-30 prompt tokens and 12-20 new ones:
// admission waits for blocks, running sequences run out of them and the youngest is preempted, recomputed later.
// Nothing is lost: every request finishes with the tokens it gets alone, and every block is free at the end.
TEST_F(SchedulerEngine, ForcedPreemptionAnswersEveryRequestWithItsTokensAlone) {
  std::mt19937 rng(77);
  struct Case {
    std::vector<int32_t> prompt;
    int32_t max_tokens;
    float temperature;
    std::vector<int32_t> expect;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 32; ++i) {
    Case c{random_prompt(rng, 10 + (i * 7) % 21), 12 + i % 9, i % 3 == 0 ? 0.7f : 0.0f, {}};
    c.expect = alone(c.prompt, c.max_tokens, sampling(c.temperature, static_cast<uint64_t>(i)));
    cases.push_back(std::move(c));
  }
  for (bool caching : {false, true}) {
    SCOPED_TRACE(caching ? "prefix caching on" : "prefix caching off");
    SchedulerOptions o = small_blocks(caching);
    o.kv_bytes = 24 * model_->kv_bytes_per_block(4);
    start_scheduler(o);
    std::vector<std::shared_ptr<RecordingSink>> sinks;
    for (size_t i = 0; i < cases.size(); ++i) {
      sinks.push_back(std::make_shared<RecordingSink>(1));
      std::string why;
      ASSERT_EQ(sched_->submit(request(cases[i].prompt, cases[i].max_tokens, sinks.back(), cases[i].temperature,
                                       static_cast<uint64_t>(i)),
                               &why),
                SubmitStatus::kAccepted)
          << why;
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      ASSERT_TRUE(sinks[i]->wait_finished());
      EXPECT_EQ(sinks[i]->reasons[0], FinishReason::kLength) << sinks[i]->messages[0];
      EXPECT_EQ(sinks[i]->tokens[0], cases[i].expect) << "request " << i;
    }
    ASSERT_TRUE(wait_stats([](const SchedulerStats& st) { return st.running == 0 && st.kv_usage == 0.0; }));
    const SchedulerStats st = sched_->stats();
    EXPECT_EQ(st.n_blocks, 24);
    EXPECT_GT(st.preemptions, 0u) << "the pool was meant to run out";
    // A request the cache can never hold is refused by name, not left waiting.
    std::string why;
    EXPECT_EQ(sched_->submit(request(std::vector<int32_t>(90, 3), 10, std::make_shared<RecordingSink>(1)), &why),
              SubmitStatus::kInvalid);
    EXPECT_NE(why.find("96 tokens the KV cache holds"), std::string::npos) << why;
    stop_scheduler();
    sched_.reset();
  }
}

#ifdef TESSERA_TEST_METRICS
TEST_F(SchedulerEngine, MetricsCountTokensAndFinishedRequests) {
  monitoring::Metrics metrics("tiny", 128);
  start_scheduler(options(4), true, &metrics);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  int64_t prompt_tokens = 0;
  for (int i = 0; i < 5; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>(1));
    std::vector<int32_t> p(static_cast<size_t>(3 + 2 * i), 7);
    prompt_tokens += static_cast<int64_t>(p.size());
    ASSERT_EQ(sched_->submit(request(p, 5, sinks.back()), nullptr), SubmitStatus::kAccepted);
  }
  for (auto& s : sinks) ASSERT_TRUE(s->wait_finished());
  ASSERT_TRUE(wait_stats([](const SchedulerStats& s) { return s.running == 0; }));
  stop_scheduler();
  const std::string text = metrics.exposition();
  auto value = [&](const std::string& series) {
    const auto at = text.find(series + " ");
    if (at == std::string::npos) return -1.0;
    return std::stod(text.substr(at + series.size() + 1));
  };
  EXPECT_EQ(value("tessera_prompt_tokens_total{model_name=\"tiny\"}"), double(prompt_tokens)) << text;
  EXPECT_EQ(value("tessera_generation_tokens_total{model_name=\"tiny\"}"), 25.0);
  EXPECT_EQ(value("tessera_time_to_first_token_seconds_count{model_name=\"tiny\"}"), 5.0);
  EXPECT_EQ(value("tessera_inter_token_latency_seconds_count{model_name=\"tiny\"}"), 20.0);
  EXPECT_EQ(value("tessera_e2e_request_latency_seconds_count{model_name=\"tiny\"}"), 5.0);
  EXPECT_EQ(value("tessera_num_requests_running{model_name=\"tiny\"}"), 0.0);
  EXPECT_NE(text.find("tessera_prefill_padding_tokens_count"), std::string::npos);
}
#endif

}  // namespace
}  // namespace tessera::coordinator
