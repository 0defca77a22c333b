// tests/coordinator/test_scheduler.cpp — the scheduler's pieces alone (label cpu, no model): the prefill-group
// former as a table of queue shapes → expected groups, the bounded waiting queue, the slot pool, and the step
// loop over a scripted dispatcher (plans per step, releases, n > 1, cluster failure).
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "common/check.h"
#include "coordinator/scheduler/prefill_group_former.h"
#include "coordinator/scheduler/scheduler.h"
#include "coordinator/scheduler/slot_pool.h"
#include "coordinator/scheduler/waiting_queue.h"

namespace tessera::coordinator {
namespace {

struct FormerCase {
  const char* what;
  std::vector<GroupCandidate> waiting;  // (prompt_len, n_seqs) in arrival order
  GroupLimits limits;
  GroupChoice expect;
};

TEST(PrefillGroupFormer, Table) {
  const std::vector<FormerCase> cases = {
      {"empty queue", {}, {4, 4096, 0.25}, {}},
      {"the oldest alone", {{10, 1}}, {4, 4096, 0.25}, {{0}, 10, 1, 0}},
      {"equal lengths group up to the free slots",
       {{8, 1}, {8, 1}, {8, 1}, {8, 1}, {8, 1}},
       {3, 4096, 0.25},
       {{0, 1, 2}, 8, 3, 0}},
      {"no free slot: no group", {{8, 1}}, {0, 4096, 0.25}, {}},
      {"the oldest needs more slots than free: nothing younger jumps ahead", {{8, 3}, {8, 1}}, {2, 4096, 0.25}, {}},
      {"n sequences are n rows", {{8, 2}, {8, 2}, {8, 1}}, {4, 4096, 0.25}, {{0, 1}, 8, 4, 0}},
      {"a request with too many sequences is passed over, a later one fits",
       {{8, 2}, {8, 3}, {8, 1}},
       {4, 4096, 0.25},
       {{0, 2}, 8, 3, 0}},
      // 10 and 8: pad 2 of 20 = 0.10 ≤ 0.25; adding 4 → L 10, 3 rows, pad 2 + 6 = 8 of 30 > 0.25.
      {"a much shorter prompt is passed over",
       {{10, 1}, {8, 1}, {4, 1}, {9, 1}},
       {8, 4096, 0.25},
       {{0, 1, 3}, 10, 3, 3}},
      // A longer newcomer widens the group: 4 then 5 → pad 1 of 10; then 8 → L 8, pad 4 + 3 = 7 of 24 > 0.25.
      {"a longer prompt that pads the others too much is passed over",
       {{4, 1}, {5, 1}, {8, 1}, {5, 1}},
       {8, 4096, 0.25},
       {{0, 1, 3}, 5, 3, 1}},
      {"exactly at the bound joins (pad 1 of 4 = 0.25)", {{2, 1}, {1, 1}}, {8, 4096, 0.25}, {{0, 1}, 2, 2, 1}},
      {"zero pad fraction: only equal lengths",
       {{6, 1}, {5, 1}, {6, 1}, {7, 1}, {6, 1}},
       {8, 4096, 0.0},
       {{0, 2, 4}, 6, 3, 0}},
      {"token budget bounds rows x L", {{100, 1}, {100, 1}, {100, 1}, {100, 1}}, {8, 250, 0.25}, {{0, 1}, 100, 2, 0}},
      {"the oldest runs even over the token budget (prompts are not split)",
       {{300, 1}, {10, 1}},
       {8, 250, 0.25},
       {{0}, 300, 1, 0}},
      {"an old long prompt opens the group; short ones do not fit beside it",
       {{60, 1}, {4, 1}, {4, 1}, {58, 1}},
       {8, 4096, 0.25},
       {{0, 3}, 60, 2, 2}},
  };
  for (const auto& c : cases) {
    const GroupChoice got = form_prefill_group(c.waiting, c.limits);
    EXPECT_EQ(got.picked, c.expect.picked) << c.what;
    EXPECT_EQ(got.cols, c.expect.cols) << c.what;
    EXPECT_EQ(got.rows, c.expect.rows) << c.what;
    EXPECT_EQ(got.pad_tokens, c.expect.pad_tokens) << c.what;
  }
}

TEST(PrefillGroupFormer, PaddingFractionNeverExceedsTheBoundBeyondTheOldest) {
  // Pseudo-random queues: every formed group of 2+ requests respects slots, budget and pad fraction.
  uint64_t x = 12345;
  auto next = [&] { return (x = x * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<GroupCandidate> q(next() % 12);
    for (auto& c : q) c = {static_cast<int32_t>(1 + next() % 64), static_cast<int32_t>(1 + next() % 3)};
    const GroupLimits lim{static_cast<int32_t>(next() % 10), static_cast<int64_t>(32 + next() % 400),
                          static_cast<double>(next() % 50) / 100.0};
    const GroupChoice g = form_prefill_group(q, lim);
    if (g.picked.empty()) {
      EXPECT_TRUE(q.empty() || q[0].n_seqs > lim.free_slots);
      continue;
    }
    EXPECT_EQ(g.picked[0], 0u);
    EXPECT_LE(g.rows, lim.free_slots);
    int64_t real = 0;
    int32_t rows = 0, cols = 0;
    for (size_t i : g.picked) {
      real += int64_t{q[i].prompt_len} * q[i].n_seqs;
      rows += q[i].n_seqs;
      cols = std::max(cols, q[i].prompt_len);
    }
    EXPECT_EQ(rows, g.rows);
    EXPECT_EQ(cols, g.cols);
    EXPECT_EQ(int64_t{rows} * cols - real, g.pad_tokens);
    if (g.picked.size() > 1) {
      EXPECT_LE(int64_t{rows} * cols, lim.token_budget);
      EXPECT_LE(static_cast<double>(g.pad_tokens), lim.max_pad_fraction * rows * cols + 1e-9);
    }
  }
}

std::shared_ptr<Request> make_request(uint64_t id, int32_t len, int32_t max_tokens = 4, int32_t n = 1) {
  auto r = std::make_shared<Request>();
  r->id = id;
  r->prompt.assign(static_cast<size_t>(len), 1);
  r->max_tokens = max_tokens;
  r->n = n;
  r->sampling.temperature = 0.0f;
  return r;
}

TEST(WaitingQueue, BoundedFifo) {
  WaitingQueue q(3);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_TRUE(q.push(make_request(i, 4)));
  EXPECT_FALSE(q.push(make_request(9, 4)));  // full: refused, nothing grows
  EXPECT_EQ(q.size(), 3u);
  auto taken = q.take({0, 2});
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0]->id, 0u);
  EXPECT_EQ(taken[1]->id, 2u);
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q.at(0)->id, 1u);
  EXPECT_TRUE(q.push(make_request(3, 4)));
  q.at(0)->cancel();
  auto gone = q.remove_if([](const Request& r) { return r.cancelled(); });
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0]->id, 1u);
  EXPECT_EQ(q.at(0)->id, 3u);
  EXPECT_EQ(q.clear().size(), 1u);
  EXPECT_TRUE(q.empty());
}

TEST(SlotPool, LowestFreeFirstAndReuse) {
  SlotPool p(3);
  EXPECT_EQ(p.acquire(), 0);
  EXPECT_EQ(p.acquire(), 1);
  EXPECT_EQ(p.n_free(), 1);
  EXPECT_DOUBLE_EQ(p.usage(), 2.0 / 3.0);
  p.release(0);
  EXPECT_EQ(p.acquire(), 0);
  EXPECT_EQ(p.acquire(), 2);
  EXPECT_EQ(p.n_free(), 0);
}

TEST(FinishReason, Names) {
  EXPECT_STREQ(finish_reason_name(FinishReason::kStop), "stop");
  EXPECT_STREQ(finish_reason_name(FinishReason::kLength), "length");
  EXPECT_STREQ(finish_reason_name(FinishReason::kAbort), "abort");
  EXPECT_STREQ(finish_reason_name(FinishReason::kError), "error");
}

// A dispatcher that records every plan and answers token 100 + slot for every row; throws at step fail_at.
class ScriptedDispatcher final : public parallel::Dispatcher {
 public:
  parallel::StepResult run(const parallel::StepPlan& plan) override {
    std::lock_guard lk(mu);
    plans.push_back(plan);
    if (fail_at >= 0 && static_cast<int>(plans.size()) - 1 == fail_at) throw Error("rank 2 died (test)");
    parallel::StepResult r;
    r.step_id = plan.step_id;
    if (plan.kind == parallel::StepPlan::Kind::kConfigure) {  // every slot fits, each a whole context of blocks
      r.n_slots = plan.n_slots;
      r.block_size = plan.block_size;
      r.n_blocks = plan.n_slots * ((plan.max_ctx + plan.block_size - 1) / plan.block_size);
    }
    for (int32_t s : plan.prefill_slots) r.tokens.push_back(100 + s);
    for (int32_t s : plan.decode_slots) r.tokens.push_back(100 + s);
    r.logprobs.assign(r.tokens.size(), -0.5f);
    r.top_logprobs.resize(r.tokens.size());
    return r;
  }
  int tp_size() const override { return 1; }
  std::mutex mu;
  std::vector<parallel::StepPlan> plans;
  int fail_at = -1;
};

struct Finished {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<int> finishes;
  std::vector<FinishReason> reasons;
  std::vector<std::string> messages;
};

class SimpleSink final : public RequestSink {
 public:
  explicit SimpleSink(int n) { f.tokens.resize(n), f.finishes.resize(n), f.reasons.resize(n), f.messages.resize(n); }
  TokenVerdict on_token(const TokenEvent& ev) override {
    f.tokens[static_cast<size_t>(ev.seq)].push_back(ev.token);
    return stop_after > 0 && static_cast<int>(f.tokens[static_cast<size_t>(ev.seq)].size()) == stop_after + ev.seq
               ? TokenVerdict::kStop
               : TokenVerdict::kContinue;
  }
  void on_finish(int32_t seq, FinishReason r, const std::string& m) override {
    ++f.finishes[static_cast<size_t>(seq)];
    f.reasons[static_cast<size_t>(seq)] = r;
    f.messages[static_cast<size_t>(seq)] = m;
  }
  Finished f;
  int stop_after = 0;  // > 0: sequence i reports a stop string at its token stop_after + i
};

// A sequence's SamplingLists go with its prefill row, each list only when its setting is on; before min_tokens
// a stop id does not end the sequence (the workers mask it; here the scripted dispatcher samples it anyway).
TEST(SchedulerSteps, SamplingListsGoWithThePrefillAndMinTokensHoldsStops) {
  ScriptedDispatcher d;
  SchedulerOptions o{.n_slots = 2, .max_ctx = 64, .max_waiting = 8, .token_budget = 4096, .max_pad_fraction = 1.0};
  o.vocab = 200;
  Scheduler s(d, o, nullptr);
  auto a = make_request(1, 4, 4), b = make_request(2, 4, 4);
  a->prompt = {5, 3, 5, 7};
  a->logit_bias = {{3, -100.0f}};
  a->sampling.repetition_penalty = 1.5f;
  a->sampling.min_tokens = 2;
  a->stop_ids = {100};  // slot 0 answers token 100 at every step
  b->stop_ids = {101};  // slot 1's token: b stops at its first
  std::vector<std::shared_ptr<SimpleSink>> sinks;
  for (auto& r : {a, b}) {
    sinks.push_back(std::make_shared<SimpleSink>(1));
    r->sink = sinks.back();
    std::string why;
    ASSERT_EQ(s.submit(r, &why), SubmitStatus::kAccepted) << why;
  }
  auto refused = [&](std::shared_ptr<Request> r) {
    r->sink = std::make_shared<SimpleSink>(1);
    std::string why;
    EXPECT_EQ(s.submit(r, &why), SubmitStatus::kInvalid);
    return why;
  };
  auto c = make_request(3, 4, 4);
  c->sampling.min_tokens = 5;
  EXPECT_NE(refused(c).find("min_tokens (5) exceeds max_tokens (4)"), std::string::npos);
  c = make_request(4, 4, 4);
  c->logit_bias = {{200, 1.0f}};
  EXPECT_NE(refused(c).find("logit_bias token 200"), std::string::npos);
  s.begin_drain();
  s.run();
  const auto& p = d.plans;
  ASSERT_GE(p.size(), 2u);
  EXPECT_EQ(p[1].prefill_slots, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(p[1].prefill_bias_len, (std::vector<int32_t>{1, 0}));
  ASSERT_EQ(p[1].prefill_bias.size(), 1u);
  EXPECT_EQ(p[1].prefill_bias[0].token, 3);
  EXPECT_EQ(p[1].prefill_bias[0].bias, -100.0f);
  EXPECT_EQ(p[1].prefill_stop_len, (std::vector<int32_t>{1, 0}));  // b has no min_tokens: its stop ids stay home
  EXPECT_EQ(p[1].prefill_stop, (std::vector<int32_t>{100}));
  EXPECT_EQ(p[1].prefill_prompt_len, (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(p[1].prefill_prompt, (std::vector<int32_t>{3, 5, 7}));     // distinct, ascending
  EXPECT_EQ(sinks[0]->f.tokens[0], (std::vector<int32_t>{100, 100}));  // its stop id ends it from token 2 on
  EXPECT_EQ(sinks[0]->f.reasons[0], FinishReason::kStop);
  EXPECT_EQ(sinks[1]->f.tokens[0], (std::vector<int32_t>{101}));
  EXPECT_EQ(sinks[1]->f.reasons[0], FinishReason::kStop);
}

TEST(SchedulerSteps, PlansAreReleasesPlusOneGroupPlusDecodes) {
  ScriptedDispatcher d;
  Scheduler s(d, {.n_slots = 3, .max_ctx = 64, .max_waiting = 8, .token_budget = 4096, .max_pad_fraction = 0.25},
              nullptr);
  // A: 2 tokens; B: n = 2, 3 tokens each; C: waits for a slot, then takes A's.
  auto a = make_request(1, 8, 2), b = make_request(2, 8, 3, 2), c = make_request(3, 8, 1);
  std::vector<std::shared_ptr<SimpleSink>> sinks;
  for (auto& r : {a, b, c}) {
    sinks.push_back(std::make_shared<SimpleSink>(r->n));
    r->sink = sinks.back();
    r->sampling.seed = 40;
    std::string why;
    ASSERT_EQ(s.submit(r, &why), SubmitStatus::kAccepted) << why;
  }
  s.begin_drain();
  s.run();
  const auto& p = d.plans;
  ASSERT_EQ(p.size(), 5u);
  EXPECT_EQ(p[0].kind, parallel::StepPlan::Kind::kConfigure);
  EXPECT_EQ(p[0].n_slots, 3);
  // step 1: A and B's two sequences (seeds 40, 40, 41) in one group; C waits (no slot).
  EXPECT_EQ(p[1].prefill_slots, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(p[1].prefill_sampling[1].seed, 40u);
  EXPECT_EQ(p[1].prefill_sampling[2].seed, 41u);
  EXPECT_EQ(p[1].prefill_cached, (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(p[1].prefill_history_len, (std::vector<int32_t>{0, 0, 0}));
  EXPECT_TRUE(p[1].decode_slots.empty());
  // One block of 16 tokens each (8-token prompts), the lowest blocks first.
  EXPECT_EQ(p[1].table_width, 1);
  EXPECT_EQ(p[1].tables, (std::vector<int32_t>{0, 1, 2}));
  // step 2: decodes of all three; A finishes (2 tokens).
  EXPECT_EQ(p[2].decode_slots, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(p[2].decode_positions, (std::vector<int32_t>{8, 8, 8}));
  EXPECT_TRUE(p[2].prefill_slots.empty());
  // step 3: A's slot is released and refilled by C in the same plan, beside B's decodes.
  EXPECT_EQ(p[3].release_slots, (std::vector<int32_t>{0}));
  EXPECT_EQ(p[3].prefill_slots, (std::vector<int32_t>{0}));
  EXPECT_EQ(p[3].decode_slots, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(p[3].decode_positions, (std::vector<int32_t>{9, 9}));
  // C (1 token) and B (3 tokens) finished in step 3: a release-only plan closes the run.
  EXPECT_EQ(p[4].kind, parallel::StepPlan::Kind::kStep);
  EXPECT_EQ(p[4].n_rows(), 0);
  EXPECT_EQ(p[4].release_slots, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(sinks[0]->f.tokens[0], (std::vector<int32_t>{100, 100}));
  EXPECT_EQ(sinks[1]->f.tokens[0], (std::vector<int32_t>{101, 101, 101}));
  EXPECT_EQ(sinks[1]->f.tokens[1], (std::vector<int32_t>{102, 102, 102}));
  EXPECT_EQ(sinks[2]->f.tokens[0], (std::vector<int32_t>{100}));
  for (auto& sk : sinks)
    for (size_t i = 0; i < sk->f.finishes.size(); ++i) {
      EXPECT_EQ(sk->f.finishes[i], 1);
      EXPECT_EQ(sk->f.reasons[i], FinishReason::kLength);
    }
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.kv_usage, 0.0);
  EXPECT_EQ(st.steps, 3u);
}

TEST(SchedulerSteps, StopIdEndsTheSequence) {
  ScriptedDispatcher d;
  Scheduler s(d, {.n_slots = 2, .max_ctx = 64}, nullptr);
  auto r = make_request(1, 5, 10);
  r->stop_ids = {100};  // slot 0 always answers 100
  auto sink = std::make_shared<SimpleSink>(1);
  r->sink = sink;
  ASSERT_EQ(s.submit(r, nullptr), SubmitStatus::kAccepted);
  s.begin_drain();
  s.run();
  EXPECT_EQ(sink->f.tokens[0], (std::vector<int32_t>{100}));
  EXPECT_EQ(sink->f.reasons[0], FinishReason::kStop);
}

TEST(SchedulerSteps, ClusterFailureFinishesEveryRequestWithErrorAndRethrows) {
  ScriptedDispatcher d;
  d.fail_at = 2;  // configure, step 1 succeed; step 2 throws
  Scheduler s(d, {.n_slots = 1, .max_ctx = 64}, nullptr);
  auto running = make_request(1, 4, 10), waiting = make_request(2, 4, 10);
  auto s1 = std::make_shared<SimpleSink>(1), s2 = std::make_shared<SimpleSink>(1);
  running->sink = s1;
  waiting->sink = s2;
  ASSERT_EQ(s.submit(running, nullptr), SubmitStatus::kAccepted);
  ASSERT_EQ(s.submit(waiting, nullptr), SubmitStatus::kAccepted);
  EXPECT_THROW(s.run(), Error);
  for (auto* f : {&s1->f, &s2->f}) {
    EXPECT_EQ(f->finishes[0], 1);
    EXPECT_EQ(f->reasons[0], FinishReason::kError);
    EXPECT_NE(f->messages[0].find("rank 2 died"), std::string::npos) << f->messages[0];
  }
  std::string why;
  auto late = make_request(3, 4);
  late->sink = std::make_shared<SimpleSink>(1);
  EXPECT_EQ(s.submit(late, &why), SubmitStatus::kDraining);
  EXPECT_NE(why.find("rank 2 died"), std::string::npos) << why;
}

// A sink's kStop verdict (a stop string) finishes that sequence at once, as kStop, while its siblings go on;
// its slot is released in the next plan and it gets no more decode rows.
TEST(SchedulerSteps, StopVerdictFinishesEachSiblingOnItsOwn) {
  ScriptedDispatcher d;
  Scheduler s(d, {.n_slots = 3, .max_ctx = 64}, nullptr);
  auto r = make_request(1, 4, 8, 3);
  auto sink = std::make_shared<SimpleSink>(3);
  sink->stop_after = 2;  // sequence 0 stops at its 2nd token, 1 at its 3rd, 2 at its 4th
  r->sink = sink;
  ASSERT_EQ(s.submit(r, nullptr), SubmitStatus::kAccepted);
  s.begin_drain();
  s.run();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sink->f.tokens[static_cast<size_t>(i)].size(), static_cast<size_t>(2 + i)) << i;
    EXPECT_EQ(sink->f.finishes[static_cast<size_t>(i)], 1);
    EXPECT_EQ(sink->f.reasons[static_cast<size_t>(i)], FinishReason::kStop);
  }
  const auto& p = d.plans;  // configure, prefill (3 rows), then decodes of 2, 1 sequences, then the release
  ASSERT_EQ(p.size(), 6u);
  EXPECT_EQ(p[2].decode_slots, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(p[3].release_slots, (std::vector<int32_t>{0}));
  EXPECT_EQ(p[3].decode_slots, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(p[4].release_slots, (std::vector<int32_t>{1}));
  EXPECT_EQ(p[4].decode_slots, (std::vector<int32_t>{2}));
  EXPECT_EQ(p[5].release_slots, (std::vector<int32_t>{2}));
  EXPECT_EQ(p[5].n_rows(), 0);
}

// Scheduler::fail (a rank died, noticed by its lifeline): an idle run() wakes and throws; a running one
// finishes its requests with kError at the next step and sends the cluster nothing more.
TEST(SchedulerSteps, FailWakesAnIdleRunAndRefusesNewRequests) {
  ScriptedDispatcher d;
  Scheduler s(d, {.n_slots = 2, .max_ctx = 64}, nullptr);
  std::string thrown;
  std::thread runner([&] {
    try {
      s.run();
    } catch (const Error& e) {
      thrown = e.what();
    }
  });
  for (;;) {  // configured: run() is waiting for work
    {
      std::lock_guard lk(d.mu);
      if (!d.plans.empty()) break;
    }
    std::this_thread::yield();
  }
  s.fail("world rank 2 (tensor-parallel rank 1) died (test)");
  runner.join();
  EXPECT_EQ(thrown, "world rank 2 (tensor-parallel rank 1) died (test)");
  std::string why;
  auto late = make_request(3, 4);
  late->sink = std::make_shared<SimpleSink>(1);
  EXPECT_EQ(s.submit(late, &why), SubmitStatus::kDraining);
  EXPECT_NE(why.find("world rank 2"), std::string::npos) << why;
}

class FailingSink final : public RequestSink {  // calls fail() from its third token (on the run() thread)
 public:
  explicit FailingSink(Scheduler& s) : s_(s) {}
  TokenVerdict on_token(const TokenEvent&) override {
    if (++tokens == 3) s_.fail("rank died (test)");
    return TokenVerdict::kContinue;
  }
  void on_finish(int32_t, FinishReason r, const std::string& m) override {
    ++finishes;
    reason = r;
    message = m;
  }
  Scheduler& s_;
  int tokens = 0, finishes = 0;
  FinishReason reason = FinishReason::kLength;
  std::string message;
};

TEST(SchedulerSteps, FailFinishesRunningRequestsWithErrorAtTheNextStep) {
  ScriptedDispatcher d;
  Scheduler s(d, {.n_slots = 2, .max_ctx = 64}, nullptr);
  auto r = make_request(1, 4, 50);
  auto sink = std::make_shared<FailingSink>(s);
  r->sink = sink;
  ASSERT_EQ(s.submit(r, nullptr), SubmitStatus::kAccepted);
  EXPECT_THROW(s.run(), Error);
  EXPECT_EQ(sink->tokens, 3);
  EXPECT_EQ(sink->finishes, 1);
  EXPECT_EQ(sink->reason, FinishReason::kError);
  EXPECT_EQ(sink->message, "rank died (test)");
  EXPECT_EQ(d.plans.size(), 4u);  // configure + 3 steps; nothing after the failure (not even the release)
}

}  // namespace
}  // namespace tessera::coordinator
