// coordinator/scheduler/scheduler.h — the serving step loop: requests arriving over time → StepPlans →
// tokens and finishes on each request's sink. Continuous batching with pre-padded prefill groups.
//
// Every step = the releases of slots freed since the last step + at most one new prefill group
// (prefill_group_former.h) + one decode row for every running sequence. A sequence leaves the batch the
// moment it finishes (stop id, max_tokens), is cancelled (Request::cancelled()) or passes its deadline; its
// slot and KV blocks are free for the next group at once (the slot is released on the workers in the next plan).
// A request with n > 1 runs as n sequences seeded seed + i, all in one group. Each request's tokens do not depend
// on the batch it shares or its pad offset (the workers guarantee it; tests/coordinator/test_scheduler_engine.cpp
// checks it end to end).
//
// KV memory (block_pool.h): the workers' paged cache of n_blocks blocks. Admission is by free blocks (and by free
// sequence slots, at most n_slots = scheduler.max_running); with prefix caching a request reuses the longest
// cached prefix of its prompt and its row computes only the rest. Before each step every running sequence takes
// the KV slot of its next token; when no block is left the most recently admitted running sequence is preempted
// (its blocks freed, its slot released) and resumes later, ahead of new requests, as a prefill of its prompt and
// the tokens it generated (recomputed, or found in the prefix cache), its sampler continuing where it was.
//
// Pieces, each testable alone: WaitingQueue (bounded FIFO), SlotPool (sequence slots), BlockPool (KV blocks and
// the prefix cache), form_prefill_group (pure).
//
// Sink contract: on_token for every sampled token, then exactly one on_finish per sequence — also for a
// request that was cancelled or timed out while it waited, for stop(), and for a cluster failure (kError,
// the message names the failure). Sinks are called from the run() thread with no lock held.
//
// Metrics (when non-null): running / waiting requests, KV usage (blocks in use / blocks), prompt and
// generation tokens, prefix-cache queries and hits (tokens), preemptions, TTFT / ITL / e2e / queue / prefill / decode
// times on SteadyClock, tokens per step, pad tokens per group, finished sequences by reason, rank 0's step and
// all-reduce time.
//
// Thread-safety: submit(), begin_drain(), stop() and stats() may be called from any thread; run() from one
// thread (the one that owns the dispatcher). run() waits on a condition variable when there is no work.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/request.h"
#include "coordinator/scheduler/block_pool.h"
#include "coordinator/scheduler/slot_pool.h"
#include "coordinator/scheduler/waiting_queue.h"
#include "parallel/transport.h"

namespace tessera::monitoring {
class Metrics;
}

namespace tessera::coordinator {

struct SchedulerOptions {
  int32_t n_slots = 16;  // sequence slots on the workers = the most sequences running at once
  int32_t max_ctx = 2048;
  int32_t block_size = 16;     // tokens per KV block (the CUDA backend answers with one block of max_ctx)
  uint64_t kv_bytes = 0;       // the CPU KV cache's budget; 0: n_slots sequences of max_ctx tokens
  bool prefix_caching = true;  // reuse the KV of cached prompt prefixes
  int32_t max_waiting = 256;
  int32_t token_budget = 4096;  // rows × L of a step's prefill group + its decode rows (the oldest request
                                // alone may exceed it: prompts are not split)
  double max_pad_fraction = 0.25;
  int64_t vocab = 0;  // > 0: submit() checks prompt ids against it
};

struct SchedulerStats {
  int32_t running = 0, waiting = 0;  // requests
  double kv_usage = 0.0;             // blocks in use / blocks
  int32_t n_blocks = 0, block_size = 0;
  uint64_t prefix_cache_queries = 0, prefix_cache_hits = 0;  // tokens
  uint64_t preemptions = 0;
  uint64_t prompt_tokens = 0, generation_tokens = 0;  // since the start: admitted prompts, sampled tokens
  uint64_t steps = 0;                                 // steps that ran rows
  double step_seconds = 0.0;                          // TP rank 0's time inside those steps, summed
  double collective_seconds = 0.0;                    // of which in all-reduces and gathers
};

class Scheduler {
 public:
  Scheduler(parallel::Dispatcher& dispatcher, SchedulerOptions options, monitoring::Metrics* metrics);
  ~Scheduler();  // finishes (kAbort) requests still queued when run() was never called
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // kAccepted, or why not: kInvalid (why names the field: empty prompt, an id outside the vocabulary,
  // max_tokens < 1, n outside [1, n_slots], prompt + max_tokens over max_ctx or over the KV cache's tokens, bad
  // sampling, no sink),
  // kQueueFull (max_waiting requests wait already), kDraining (begin_drain(), stop() or a cluster failure).
  SubmitStatus submit(std::shared_ptr<Request> request, std::string* why);

  // Configures the workers' KV cache (options.n_slots sequences of max_ctx tokens, blocks of block_size, the CPU
  // budget kv_bytes) and returns how many sequence slots they allocated: fewer when an accelerator's KV budget holds
  // fewer (the scheduler then runs with that many, and requests asking for more sequences than that are refused).
  // stats() then says the blocks. Throws tessera::Error on a cluster failure.
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

  // The step's prefill group: resumed sequences (taken from preempted_) and new requests, in row order.
  void admit(std::vector<std::unique_ptr<Sequence>> resumed, std::vector<std::shared_ptr<Request>> requests,
             parallel::StepPlan& plan, SteadyClock::time_point now);
  // Every running sequence takes the KV slot of its next token, preempting the youngest while none is left.
  void grow();
  void preempt(Sequence& s);
  void add_tables(parallel::StepPlan& plan, const std::vector<const Sequence*>& rows) const;
  void reap(SteadyClock::time_point now);
  std::string kv_refusal(const Request& r) const;  // mu_ held
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
  int32_t n_slots_;  // the sequence slots the workers allocated (options.n_slots until configure())
  int32_t n_blocks_ = 0, block_size_ = 0;  // the workers' KV blocks (configure(); 0 before)
  SchedulerStats stats_;

  // The run() thread's own state.
  bool configured_ = false;
  SlotPool slots_;
  std::optional<BlockPool> blocks_;                     // configure()
  std::vector<std::unique_ptr<Sequence>> preempted_;    // oldest first: resumed before any new request
  uint64_t admissions_ = 0;                             // a sequence's admission number (the youngest is preempted)
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0;  // copied to stats_ by publish()
  std::vector<std::unique_ptr<Sequence>> running_;      // in the order of a step's result rows
  std::vector<int32_t> pending_release_;
  uint64_t step_id_ = 0;
  int32_t n_running_requests_ = 0;
};

}  // namespace tessera::coordinator
