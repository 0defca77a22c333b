// coordinator/scheduler/scheduler.h — the serving step loop: requests arriving over time → StepPlans →
// tokens and finishes on each request's sink. Continuous batching with pre-padded prefill groups.
//
// Every step = the releases of slots freed since the last step + at most one new prefill group
// (prefill_group_former.h) + one decode row for every running sequence. A sequence leaves the batch the
// moment it finishes (stop id, max_tokens), is cancelled (Request::cancelled()) or passes its deadline; its
// slot is free for the next group at once and released on the workers in the next plan. A request with
// n > 1 runs as n sequences seeded seed + i, all in one group. Each request's tokens do not depend on the
// batch it shares or its pad offset (the workers guarantee it; tests/coordinator/test_scheduler_engine.cpp
// checks it end to end).
//
// Pieces, each testable alone: WaitingQueue (bounded FIFO), SlotPool (KV capacity), form_prefill_group (pure).
//
// Sink contract: on_token for every sampled token, then exactly one on_finish per sequence — also for a
// request that was cancelled or timed out while it waited, for stop(), and for a cluster failure (kError,
// the message names the failure). Sinks are called from the run() thread with no lock held.
//
// Metrics (when non-null): running / waiting requests, KV usage (used slots / n_slots), prompt and
// generation tokens, TTFT / ITL / e2e / queue / prefill / decode times on SteadyClock, tokens per step,
// pad tokens per group, finished sequences by reason, rank 0's step and all-reduce time.
//
// Thread-safety: submit(), begin_drain(), stop() and stats() may be called from any thread; run() from one
// thread (the one that owns the dispatcher). run() waits on a condition variable when there is no work.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/request.h"
#include "coordinator/scheduler/slot_pool.h"
#include "coordinator/scheduler/waiting_queue.h"
#include "parallel/transport.h"

namespace tessera::monitoring {
class Metrics;
}

namespace tessera::coordinator {

struct SchedulerOptions {
  int32_t n_slots = 16;  // KV slots on the workers = the most sequences running at once
  int32_t max_ctx = 2048;
  int32_t max_waiting = 256;
  int32_t token_budget = 4096;  // rows × L of a step's prefill group + its decode rows (the oldest request
                                // alone may exceed it: prompts are not split)
  double max_pad_fraction = 0.25;
  int64_t vocab = 0;  // > 0: submit() checks prompt ids against it
};

struct SchedulerStats {
  int32_t running = 0, waiting = 0;  // requests
  double kv_usage = 0.0;             // used slots / n_slots
  uint64_t steps = 0;                // steps that ran rows
  double step_seconds = 0.0;         // TP rank 0's time inside those steps, summed
  double collective_seconds = 0.0;   // of which in all-reduces and gathers
};

class Scheduler {
 public:
  Scheduler(parallel::Dispatcher& dispatcher, SchedulerOptions options, monitoring::Metrics* metrics);
  ~Scheduler();  // finishes (kAbort) requests still queued when run() was never called
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // kAccepted, or why not: kInvalid (why names the field: empty prompt, an id outside the vocabulary,
  // max_tokens < 1, n outside [1, n_slots], prompt + max_tokens over max_ctx, bad sampling, no sink),
  // kQueueFull (max_waiting requests wait already), kDraining (begin_drain(), stop() or a cluster failure).
  SubmitStatus submit(std::shared_ptr<Request> request, std::string* why);

  // Configures the workers' KV cache for options.n_slots slots of max_ctx tokens and returns how many they
  // allocated: fewer when an accelerator's KV budget holds fewer (the scheduler then runs with that many, and
  // requests asking for more sequences than that are refused). Throws tessera::Error on a cluster failure.
  // Call it before serving to learn the capacity; run() calls it when it was not called.
  int32_t configure();
  // Steps until stop(), or until begin_drain() and nothing is left in flight. On a cluster failure every
  // request finishes with kError and the tessera::Error is rethrown.
  void run();
  void begin_drain();
  void stop();
  // The cluster failed outside a step (a rank died while the scheduler idles; parallel/lifeline.h): run()
  // finishes every request with kError and throws tessera::Error(message); submit() refuses from now on.
  void fail(const std::string& message);
  SchedulerStats stats() const;

 private:
  struct Active;
  struct Sequence;

  void admit(std::vector<std::shared_ptr<Request>> requests, parallel::StepPlan& plan, SteadyClock::time_point now);
  void reap(SteadyClock::time_point now);
  void process(const parallel::StepPlan& plan, const parallel::StepResult& result, size_t n_prefill_rows);
  void finish(Sequence& seq, FinishReason reason, const std::string& message, SteadyClock::time_point now);
  void finish_waiting(const std::vector<std::shared_ptr<Request>>& requests, FinishReason reason,
                      const std::string& message);
  void finish_all(FinishReason reason, const std::string& message);
  void flush_releases();
  parallel::StepResult dispatch(parallel::StepPlan& plan);
  void publish();  // stats_ and the gauges

  parallel::Dispatcher& dispatcher_;
  const SchedulerOptions options_;
  monitoring::Metrics* const metrics_;

  mutable std::mutex mu_;  // guards the fields up to stats_
  std::condition_variable cv_;
  WaitingQueue waiting_;
  bool draining_ = false, stopping_ = false, failed_ = false;
  std::string failure_;
  int32_t n_slots_;  // the KV slots the workers allocated (options.n_slots until configure())
  SchedulerStats stats_;

  // The run() thread's own state.
  bool configured_ = false;
  SlotPool slots_;
  std::vector<std::unique_ptr<Sequence>> running_;  // in the order of a step's result rows
  std::vector<int32_t> pending_release_;
  uint64_t step_id_ = 0;
  int32_t n_running_requests_ = 0;
};

}  // namespace tessera::coordinator
