// coordinator/scheduler/scheduler.cpp — see scheduler.h.
#include "coordinator/scheduler/scheduler.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <iterator>

#include "common/check.h"
#include "coordinator/scheduler/prefill_group_former.h"
#include "monitoring/metrics.h"

// Metrics are optional (null in tests and tools): every call goes through this one guard.
#define TESSERA_METRIC(call)      \
  do {                            \
    if (metrics_) metrics_->call; \
  } while (0)

namespace tessera::coordinator {
namespace {

double seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

// Sequence `seq` of a request samples with seed + seq.
SamplingParams wire_sampling(const SamplingParams& p, int32_t seq) {
  SamplingParams s = p;
  s.seed += static_cast<uint64_t>(seq);
  return s;
}

}  // namespace

// One admitted request: its n sequences share this.
struct Scheduler::Active {
  std::shared_ptr<Request> request;
  int32_t n_open = 0;
  int64_t n_generated = 0;
  SteadyClock::time_point t_admitted, t_first_token;
  bool has_first_token = false;
};

struct Scheduler::Sequence {
  std::shared_ptr<Active> owner;
  int32_t index = 0;  // 0..n-1 within the request
  int32_t slot = 0;
  int32_t length = 0;  // tokens in the KV cache
  int32_t n_generated = 0;
  int32_t last_token = 0;  // sampled, not yet in the KV cache: the next decode row's input
  SteadyClock::time_point t_last_token;
  bool done = false;
};

Scheduler::Scheduler(parallel::Dispatcher& dispatcher, SchedulerOptions options, monitoring::Metrics* metrics)
    : dispatcher_(dispatcher),
      options_(options),
      metrics_(metrics),
      waiting_(static_cast<size_t>(std::max(options.max_waiting, 0))),
      n_slots_(options.n_slots),
      slots_(options.n_slots) {
  TESSERA_CHECK(options.n_slots >= 1 && options.max_ctx >= 2 && options.token_budget >= 1);
  (void)metrics_;
}

// run() finishes everything it admitted; requests still queued here were never run (run() was not called).
Scheduler::~Scheduler() {
  std::vector<std::shared_ptr<Request>> left;
  {
    std::lock_guard lk(mu_);
    left = waiting_.clear();
  }
  finish_waiting(left, FinishReason::kAbort, "the scheduler was destroyed");
}

SubmitStatus Scheduler::submit(std::shared_ptr<Request> request, std::string* why) {
  auto invalid = [&](std::string msg) {
    if (why) *why = std::move(msg);
    return SubmitStatus::kInvalid;
  };
  const Request& r = *request;
  if (!r.sink) return invalid("the request has no sink");
  if (r.prompt.empty()) return invalid("prompt is empty");
  if (options_.vocab > 0)
    for (int32_t id : r.prompt)
      if (id < 0 || id >= options_.vocab)
        return invalid("prompt token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(options_.vocab) + ")");
  if (r.max_tokens < 1) return invalid("max_tokens must be >= 1, got " + std::to_string(r.max_tokens));
  const int64_t need = static_cast<int64_t>(r.prompt.size()) + r.max_tokens;
  if (need > options_.max_ctx)
    return invalid("prompt (" + std::to_string(r.prompt.size()) + " tokens) + max_tokens (" +
                   std::to_string(r.max_tokens) + ") exceeds the context length " + std::to_string(options_.max_ctx));
  try {
    r.sampling.validate();
  } catch (const Error& e) {
    return invalid(e.what());
  }
  {
    std::lock_guard lk(mu_);
    if (r.n < 1 || r.n > n_slots_)
      return invalid("n must be in [1, " + std::to_string(n_slots_) + "], got " + std::to_string(r.n));
    if (failed_ || draining_ || stopping_) {
      if (why) *why = failed_ ? "the cluster failed: " + failure_ : "the server is shutting down";
      return SubmitStatus::kDraining;
    }
    if (!waiting_.push(std::move(request))) {
      if (why) *why = "the waiting queue is full (" + std::to_string(waiting_.capacity()) + " requests)";
      return SubmitStatus::kQueueFull;
    }
    stats_.waiting = static_cast<int32_t>(waiting_.size());
    TESSERA_METRIC(set_waiting(stats_.waiting));
  }
  cv_.notify_one();
  return SubmitStatus::kAccepted;
}

void Scheduler::begin_drain() {
  {
    std::lock_guard lk(mu_);
    draining_ = true;
  }
  cv_.notify_one();
}

void Scheduler::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
}

void Scheduler::fail(const std::string& message) {
  {
    std::lock_guard lk(mu_);
    if (failed_) return;
    failed_ = true;
    failure_ = message;
  }
  cv_.notify_one();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

int32_t Scheduler::configure() {
  parallel::StepPlan plan;
  plan.kind = parallel::StepPlan::Kind::kConfigure;
  plan.n_slots = options_.n_slots;
  plan.max_ctx = options_.max_ctx;
  const int32_t granted = dispatch(plan).n_slots;
  if (granted < 1 || granted > options_.n_slots)
    throw Error("configure: the workers allocated " + std::to_string(granted) + " KV slots for " +
                std::to_string(options_.n_slots) + " asked");
  slots_ = SlotPool(granted);
  configured_ = true;
  std::vector<std::shared_ptr<Request>> too_wide;  // asked for more sequences than there are slots
  {
    std::lock_guard lk(mu_);
    n_slots_ = granted;
    too_wide = waiting_.remove_if([granted](const Request& r) { return r.n > granted; });
    stats_.waiting = static_cast<int32_t>(waiting_.size());
  }
  finish_waiting(too_wide, FinishReason::kError,
                 "n exceeds the " + std::to_string(granted) + " KV slots the workers could allocate");
  return granted;
}

void Scheduler::run() {
  if (!configured_) configure();

  for (;;) {
    std::vector<std::shared_ptr<Request>> cancelled, expired;
    SteadyClock::time_point now;
    {
      std::unique_lock lk(mu_);
      // Wakes for new requests, drain and stop; with sequences running it never waits (each step is work).
      cv_.wait(lk, [&] { return failed_ || stopping_ || draining_ || !waiting_.empty() || !running_.empty(); });
      if (failed_) {  // fail(): the cluster is gone, nothing more is sent to it
        const std::string failure = failure_;
        lk.unlock();
        pending_release_.clear();
        finish_all(FinishReason::kError, failure);
        publish();
        throw Error(failure);
      }
      if (stopping_) {
        lk.unlock();
        finish_all(FinishReason::kAbort, "the scheduler was stopped");
        flush_releases();
        publish();
        return;
      }
      now = SteadyClock::now();
      cancelled = waiting_.remove_if([](const Request& r) { return r.cancelled(); });
      expired = waiting_.remove_if([&](const Request& r) { return now >= r.deadline; });
    }
    finish_waiting(cancelled, FinishReason::kAbort, "cancelled");
    finish_waiting(expired, FinishReason::kAbort, "request timed out");
    reap(now);

    // Decodes of every running sequence; then at most one group of waiting requests into the free slots.
    parallel::StepPlan plan;
    plan.release_slots = std::move(pending_release_);
    pending_release_.clear();
    for (const auto& s : running_) {
      plan.decode_tokens.push_back(s->last_token);
      plan.decode_slots.push_back(s->slot);
      plan.decode_positions.push_back(s->length);
    }
    const size_t n_decodes = running_.size();
    size_t n_waiting = 0;
    std::vector<std::shared_ptr<Request>> admitted;
    {
      std::lock_guard lk(mu_);
      if (draining_ && waiting_.empty() && running_.empty()) {
        pending_release_ = std::move(plan.release_slots);
        break;
      }
      std::vector<GroupCandidate> candidates;
      candidates.reserve(waiting_.size());
      for (size_t i = 0; i < waiting_.size(); ++i)
        candidates.push_back({static_cast<int32_t>(waiting_.at(i)->prompt.size()), waiting_.at(i)->n});
      const GroupLimits limits{slots_.n_free(),
                               std::max<int64_t>(0, int64_t{options_.token_budget} - static_cast<int64_t>(n_decodes)),
                               options_.max_pad_fraction};
      admitted = waiting_.take(form_prefill_group(candidates, limits).picked);
      n_waiting = waiting_.size();
    }
    now = SteadyClock::now();
    admit(std::move(admitted), plan, now);
    if (plan.n_rows() == 0) {
      // Nothing runs: every request left while it waited, or the last sequences were reaped. Waiting requests
      // would have found every slot free.
      TESSERA_CHECK(n_waiting == 0);
      pending_release_ = std::move(plan.release_slots);
      publish();
      continue;
    }
    const parallel::StepResult result = dispatch(plan);
    process(plan, result, plan.prefill_pad.size());
    TESSERA_METRIC(observe_rank_step_time(0, result.step_seconds));
    TESSERA_METRIC(observe_allreduce_time(0, result.collective_seconds));
    {
      std::lock_guard lk(mu_);
      ++stats_.steps;
      stats_.step_seconds += result.step_seconds;
      stats_.collective_seconds += result.collective_seconds;
    }
    publish();
  }
  flush_releases();
  publish();
}

void Scheduler::admit(std::vector<std::shared_ptr<Request>> requests, parallel::StepPlan& plan,
                      SteadyClock::time_point now) {
  if (requests.empty()) return;
  int32_t cols = 0;
  for (const auto& r : requests) cols = std::max(cols, static_cast<int32_t>(r->prompt.size()));
  plan.prefill_cols = cols;
  int64_t prompt_tokens = 0, pad_tokens = 0;
  std::vector<std::unique_ptr<Sequence>> group;  // in row order
  for (auto& r : requests) {
    auto active = std::make_shared<Active>();
    active->request = r;
    active->n_open = r->n;
    active->t_admitted = now;
    ++n_running_requests_;
    const int32_t len = static_cast<int32_t>(r->prompt.size());
    TESSERA_METRIC(observe_queue_time(seconds(now - r->arrival)));
    TESSERA_METRIC(observe_prompt_len(len));
    TESSERA_METRIC(add_prompt_tokens(len));
    for (int32_t i = 0; i < r->n; ++i) {
      auto seq = std::make_unique<Sequence>();
      seq->owner = active;
      seq->index = i;
      seq->slot = slots_.acquire();
      seq->length = len;
      parallel::append_left_padded(plan.prefill_tokens, plan.prefill_pad, cols, r->prompt);
      plan.prefill_slots.push_back(seq->slot);
      plan.prefill_sampling.push_back(wire_sampling(r->sampling, i));
      prompt_tokens += len;
      pad_tokens += cols - len;
      group.push_back(std::move(seq));
    }
  }
  // The workers answer [prefill rows..., decode rows...]: running_ keeps that order.
  running_.insert(running_.begin(), std::make_move_iterator(group.begin()), std::make_move_iterator(group.end()));
  TESSERA_METRIC(observe_padding_tokens(pad_tokens));
  (void)prompt_tokens;
  (void)pad_tokens;
}

void Scheduler::reap(SteadyClock::time_point now) {
  for (auto& s : running_) {
    const Request& r = *s->owner->request;
    if (r.cancelled())
      finish(*s, FinishReason::kAbort, "cancelled", now);
    else if (now >= r.deadline)
      finish(*s, FinishReason::kAbort, "request timed out", now);
  }
  std::erase_if(running_, [](const auto& s) { return s->done; });
}

void Scheduler::process(const parallel::StepPlan& plan, const parallel::StepResult& result, size_t n_prefill_rows) {
  // running_ = [the new group's sequences..., the decoded sequences (plan order)...], as the result rows.
  const size_t n_decodes = plan.decode_tokens.size();
  TESSERA_CHECK(running_.size() == n_decodes + n_prefill_rows);
  const auto now = SteadyClock::now();
  int64_t step_tokens = static_cast<int64_t>(n_decodes);
  for (size_t b = 0; b < n_prefill_rows; ++b) step_tokens += plan.prefill_cols - plan.prefill_pad[b];
  TESSERA_METRIC(observe_tokens_per_step(step_tokens));
  TESSERA_METRIC(add_generation_tokens(static_cast<int64_t>(result.tokens.size())));
  (void)step_tokens;

  for (size_t row = 0; row < result.tokens.size(); ++row) {
    const bool prefill = row < n_prefill_rows;
    Sequence& s = *running_[row];
    if (!prefill) ++s.length;  // the decode wrote last_token into the cache
    Active& a = *s.owner;
    const Request& r = *a.request;
    TokenEvent ev;
    ev.seq = s.index;
    ev.token = result.tokens[row];
    ev.logprob = row < result.logprobs.size() ? result.logprobs[row] : 0.0f;
    if (row < result.top_logprobs.size())
      for (const auto& t : result.top_logprobs[row]) ev.top_logprobs.emplace_back(t.token, t.logprob);
    const TokenVerdict verdict = r.sink->on_token(ev);
    if (!a.has_first_token) {
      a.has_first_token = true;
      a.t_first_token = now;
      TESSERA_METRIC(observe_ttft(seconds(now - r.arrival)));
      TESSERA_METRIC(observe_prefill_time(seconds(now - a.t_admitted)));
    }
    if (s.n_generated > 0) TESSERA_METRIC(observe_itl(seconds(now - s.t_last_token)));
    ++s.n_generated;
    ++a.n_generated;
    s.t_last_token = now;
    s.last_token = ev.token;
    if (verdict == TokenVerdict::kStop || std::find(r.stop_ids.begin(), r.stop_ids.end(), ev.token) != r.stop_ids.end())
      finish(s, FinishReason::kStop, "", now);
    else if (s.n_generated >= r.max_tokens)
      finish(s, FinishReason::kLength, "", now);
  }
  std::erase_if(running_, [](const auto& s) { return s->done; });
}

void Scheduler::finish(Sequence& s, FinishReason reason, const std::string& message, SteadyClock::time_point now) {
  TESSERA_CHECK(!s.done);
  s.done = true;
  slots_.release(s.slot);
  pending_release_.push_back(s.slot);
  Active& a = *s.owner;
  // The metrics first: on_finish may complete the client's answer, and a client that reads /metrics right after
  // it must find this request counted.
  TESSERA_METRIC(request_finished(finish_reason_name(reason)));
  const bool last = --a.n_open == 0;
  if (last) {
    --n_running_requests_;
    TESSERA_METRIC(observe_e2e(seconds(now - a.request->arrival)));
    TESSERA_METRIC(observe_generation_len(a.n_generated));
    if (a.has_first_token) TESSERA_METRIC(observe_decode_time(seconds(now - a.t_first_token)));
  }
  a.request->sink->on_finish(s.index, reason, message);
  (void)now;
}

void Scheduler::finish_waiting(const std::vector<std::shared_ptr<Request>>& requests, FinishReason reason,
                               const std::string& message) {
  for (const auto& r : requests) {
    for (int32_t i = 0; i < r->n; ++i) TESSERA_METRIC(request_finished(finish_reason_name(reason)));
    TESSERA_METRIC(observe_e2e(seconds(SteadyClock::now() - r->arrival)));
    for (int32_t i = 0; i < r->n; ++i) r->sink->on_finish(i, reason, message);  // after the metrics: see finish()
  }
}

void Scheduler::finish_all(FinishReason reason, const std::string& message) {
  const auto now = SteadyClock::now();
  for (auto& s : running_)
    if (!s->done) finish(*s, reason, message, now);
  running_.clear();
  std::vector<std::shared_ptr<Request>> waiting;
  {
    std::lock_guard lk(mu_);
    waiting = waiting_.clear();
  }
  finish_waiting(waiting, reason, message);
}

void Scheduler::flush_releases() {
  if (pending_release_.empty()) return;
  parallel::StepPlan plan;
  plan.release_slots = std::move(pending_release_);
  pending_release_.clear();
  dispatch(plan);
}

parallel::StepResult Scheduler::dispatch(parallel::StepPlan& plan) {
  plan.step_id = step_id_++;
  std::string failure;
  try {
    parallel::StepResult r = dispatcher_.run(plan);
    if (!r.error.empty()) throw Error("step " + std::to_string(plan.step_id) + " failed: " + r.error);
    if (plan.kind == parallel::StepPlan::Kind::kStep && static_cast<int64_t>(r.tokens.size()) != plan.n_rows())
      throw Error("step " + std::to_string(plan.step_id) + ": the workers returned " + std::to_string(r.tokens.size()) +
                  " tokens for " + std::to_string(plan.n_rows()) + " rows");
    return r;
  } catch (const std::exception& e) {
    failure = e.what();
  }
  {
    std::lock_guard lk(mu_);
    failed_ = true;
    failure_ = failure;
  }
  pending_release_.clear();  // the workers are gone: nothing to tell them
  finish_all(FinishReason::kError, failure);
  pending_release_.clear();
  publish();
  throw Error(failure);
}

void Scheduler::publish() {
  std::lock_guard lk(mu_);
  stats_.running = n_running_requests_;
  stats_.waiting = static_cast<int32_t>(waiting_.size());
  stats_.kv_usage = slots_.usage();
  TESSERA_METRIC(set_running(stats_.running));
  TESSERA_METRIC(set_waiting(stats_.waiting));
  TESSERA_METRIC(set_kv_usage(stats_.kv_usage));
}

}  // namespace tessera::coordinator
