// coordinator/scheduler/scheduler.cpp — see scheduler.h.
#include "coordinator/scheduler/scheduler.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <iterator>
#include <span>

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
  int32_t index = 0;   // 0..n-1 within the request
  int32_t slot = -1;   // its sequence slot (and BlockPool handle) while admitted; -1 while preempted
  int32_t length = 0;  // tokens in the KV cache
  int32_t n_generated = 0;
  int32_t last_token = 0;       // sampled, not yet in the KV cache: the next decode row's input
  std::vector<int32_t> tokens;  // the prompt, then every generated token (the last: last_token)
  int32_t cached = 0;           // tokens the admission found in the prefix cache
  uint64_t admission = 0;       // admission number: the largest is the youngest
  SteadyClock::time_point t_last_token;
  bool done = false, preempted = false;
};

Scheduler::Scheduler(parallel::Dispatcher& dispatcher, SchedulerOptions options, monitoring::Metrics* metrics)
    : dispatcher_(dispatcher),
      options_(options),
      metrics_(metrics),
      waiting_(static_cast<size_t>(std::max(options.max_waiting, 0))),
      n_slots_(options.n_slots),
      slots_(options.n_slots) {
  TESSERA_CHECK(options.n_slots >= 1 && options.max_ctx >= 2 && options.token_budget >= 1 && options.block_size >= 1);
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
  if (r.sampling.min_tokens > r.max_tokens)
    return invalid("min_tokens (" + std::to_string(r.sampling.min_tokens) + ") exceeds max_tokens (" +
                   std::to_string(r.max_tokens) + ")");
  try {
    r.sampling.validate();
    SamplingLists lists;
    lists.logit_bias = r.logit_bias;
    lists.validate(options_.vocab > 0 ? options_.vocab : INT32_MAX);
  } catch (const Error& e) {
    return invalid(e.what());
  }
  {
    std::lock_guard lk(mu_);
    if (r.n < 1 || r.n > n_slots_)
      return invalid("n must be in [1, " + std::to_string(n_slots_) + "], got " + std::to_string(r.n));
    if (const std::string kv = kv_refusal(r); !kv.empty()) return invalid(kv);
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

// Why the KV cache can never hold this request ("" when it can): each sequence's prompt + max_tokens in tokens,
// and the n sequences' prompts at once (they are admitted together). Called with mu_ held.
std::string Scheduler::kv_refusal(const Request& r) const {
  if (n_blocks_ == 0) return "";  // not configured yet: configure() checks the queue
  const int64_t len = static_cast<int64_t>(r.prompt.size()), need = len + r.max_tokens;
  if (need > static_cast<int64_t>(n_blocks_) * block_size_)
    return "prompt (" + std::to_string(len) + " tokens) + max_tokens (" + std::to_string(r.max_tokens) +
           ") exceeds the " + std::to_string(static_cast<int64_t>(n_blocks_) * block_size_) +
           " tokens the KV cache holds";
  if (r.n * ((len + block_size_ - 1) / block_size_) > n_blocks_)
    return "n (" + std::to_string(r.n) + ") prompts of " + std::to_string(len) + " tokens exceed the " +
           std::to_string(static_cast<int64_t>(n_blocks_) * block_size_) + " tokens the KV cache holds";
  return "";
}

int32_t Scheduler::configure() {
  parallel::StepPlan plan;
  plan.kind = parallel::StepPlan::Kind::kConfigure;
  plan.n_slots = options_.n_slots;
  plan.max_ctx = options_.max_ctx;
  plan.block_size = options_.block_size;
  plan.kv_bytes = options_.kv_bytes;
  const parallel::StepResult r = dispatch(plan);
  const int32_t granted = r.n_slots;
  if (granted < 1 || granted > options_.n_slots)
    throw Error("configure: the workers allocated " + std::to_string(granted) + " sequence slots for " +
                std::to_string(options_.n_slots) + " asked");
  if (r.n_blocks < 1 || r.block_size < 1)
    throw Error("configure: the workers allocated " + std::to_string(r.n_blocks) + " KV blocks of " +
                std::to_string(r.block_size) + " tokens");
  slots_ = SlotPool(granted);
  blocks_.emplace(r.n_blocks, r.block_size, options_.prefix_caching);
  configured_ = true;
  std::vector<std::shared_ptr<Request>> too_wide, too_long;  // more sequences than slots; more than the cache holds
  {
    std::lock_guard lk(mu_);
    n_slots_ = granted;
    n_blocks_ = r.n_blocks;
    block_size_ = r.block_size;
    stats_.n_blocks = r.n_blocks;
    stats_.block_size = r.block_size;
    too_wide = waiting_.remove_if([granted](const Request& q) { return q.n > granted; });
    too_long = waiting_.remove_if([this](const Request& q) { return !kv_refusal(q).empty(); });
    stats_.waiting = static_cast<int32_t>(waiting_.size());
  }
  finish_waiting(too_wide, FinishReason::kError,
                 "n exceeds the " + std::to_string(granted) + " sequence slots the workers could allocate");
  finish_waiting(too_long, FinishReason::kError,
                 "the request exceeds the " + std::to_string(static_cast<int64_t>(r.n_blocks) * r.block_size) +
                     " tokens of KV cache the workers could allocate");
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
      cv_.wait(lk, [&] {
        return failed_ || stopping_ || draining_ || !waiting_.empty() || !running_.empty() || !preempted_.empty();
      });
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
    grow();  // before the decode rows: it may preempt some

    // Decodes of every running sequence; then at most one group of resumed sequences and waiting requests.
    parallel::StepPlan plan;
    for (const auto& s : running_) {
      plan.decode_tokens.push_back(s->last_token);
      plan.decode_slots.push_back(s->slot);
      plan.decode_positions.push_back(s->length);
    }
    const size_t n_decodes = running_.size();
    size_t n_waiting = 0;
    std::vector<std::shared_ptr<Request>> admitted;
    std::vector<std::unique_ptr<Sequence>> resumed;
    {
      std::lock_guard lk(mu_);
      if (draining_ && waiting_.empty() && running_.empty() && preempted_.empty()) break;
      // Candidates: the preempted sequences first (oldest first), then the queue; each as the tokens its row
      // would compute (after the cached prefix) and the blocks it would take.
      std::vector<GroupCandidate> candidates;
      const size_t n_candidates = slots_.n_free() > 0 ? preempted_.size() + waiting_.size() : 0;  // else none fits
      candidates.reserve(n_candidates);
      for (const auto& q : preempted_) {
        if (candidates.size() == n_candidates) break;
        const PrefixMatch m = blocks_->match_prefix(q->tokens);
        candidates.push_back({static_cast<int32_t>(q->tokens.size()) - m.n_cached_tokens, 1, m.n_blocks_needed});
      }
      for (size_t i = 0; i < waiting_.size() && candidates.size() < n_candidates; ++i) {
        const Request& q = *waiting_.at(i);
        const PrefixMatch m = blocks_->match_prefix(q.prompt);
        candidates.push_back({static_cast<int32_t>(q.prompt.size()) - m.n_cached_tokens, q.n,
                              static_cast<int64_t>(q.n) * m.n_blocks_needed});
      }
      const GroupLimits limits{slots_.n_free(),
                               std::max<int64_t>(0, int64_t{options_.token_budget} - static_cast<int64_t>(n_decodes)),
                               options_.max_pad_fraction, blocks_->n_free()};
      std::vector<size_t> from_queue;
      for (size_t i : form_prefill_group(candidates, limits).picked) {
        if (i < preempted_.size())
          resumed.push_back(std::move(preempted_[i]));
        else
          from_queue.push_back(i - preempted_.size());
      }
      std::erase_if(preempted_, [](const auto& q) { return q == nullptr; });
      admitted = waiting_.take(from_queue);
      n_waiting = waiting_.size() + preempted_.size();
    }
    now = SteadyClock::now();
    admit(std::move(resumed), std::move(admitted), plan, now);
    plan.release_slots = std::move(pending_release_);
    pending_release_.clear();
    if (plan.n_rows() == 0) {
      // Nothing runs: every request left while it waited, or the last sequences were reaped. Waiting requests
      // would have found every slot and block free.
      TESSERA_CHECK(n_waiting == 0);
      pending_release_ = std::move(plan.release_slots);
      publish();
      continue;
    }
    std::vector<const Sequence*> rows;
    rows.reserve(running_.size());
    for (const auto& q : running_) rows.push_back(q.get());
    add_tables(plan, rows);
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

void Scheduler::admit(std::vector<std::unique_ptr<Sequence>> resumed, std::vector<std::shared_ptr<Request>> requests,
                      parallel::StepPlan& plan, SteadyClock::time_point now) {
  std::vector<std::unique_ptr<Sequence>> group;  // in row order
  // Takes a slot and the blocks of s.tokens (reusing their cached prefix); false when the blocks ran short after
  // all (the former counted on cached blocks that an earlier row of the group evicted).
  auto place = [&](Sequence& s) {
    s.slot = slots_.acquire();
    const std::optional<int32_t> cached = blocks_->admit(static_cast<uint64_t>(s.slot), s.tokens);
    if (!cached) {
      slots_.release(s.slot);
      s.slot = -1;
      return false;
    }
    s.cached = *cached;
    s.length = 0;
    s.admission = ++admissions_;
    if (blocks_->prefix_caching()) {  // counted here, before any token of it can reach a client
      TESSERA_METRIC(add_prefix_cache_queries(static_cast<int64_t>(s.tokens.size())));
      TESSERA_METRIC(add_prefix_cache_hits(s.cached));
    }
    return true;
  };
  auto unplace = [&](Sequence& s) {
    blocks_->free(static_cast<uint64_t>(s.slot));
    slots_.release(s.slot);
    s.slot = -1;
  };
  std::vector<std::unique_ptr<Sequence>> unplaced;
  for (auto& s : resumed) {
    if (!place(*s)) {
      unplaced.push_back(std::move(s));
      continue;
    }
    s->preempted = false;
    group.push_back(std::move(s));
  }
  // Those stay first in line.
  preempted_.insert(preempted_.begin(), std::make_move_iterator(unplaced.begin()),
                    std::make_move_iterator(unplaced.end()));
  int64_t pad_tokens = 0;
  for (auto& r : requests) {
    auto active = std::make_shared<Active>();
    active->request = r;
    active->n_open = r->n;
    active->t_admitted = now;
    std::vector<std::unique_ptr<Sequence>> seqs;
    bool placed = true;
    for (int32_t i = 0; i < r->n && placed; ++i) {
      auto seq = std::make_unique<Sequence>();
      seq->owner = active;
      seq->index = i;
      seq->tokens = r->prompt;
      placed = place(*seq);
      if (placed) seqs.push_back(std::move(seq));
    }
    if (!placed) {  // back to the head of the queue, as if never taken
      for (auto& q : seqs) unplace(*q);
      std::lock_guard lk(mu_);
      waiting_.push_front(r);
      continue;
    }
    ++n_running_requests_;
    const auto len = static_cast<int32_t>(r->prompt.size());
    TESSERA_METRIC(observe_queue_time(seconds(now - r->arrival)));
    TESSERA_METRIC(observe_prompt_len(len));
    TESSERA_METRIC(add_prompt_tokens(len));
    prompt_tokens_ += static_cast<uint64_t>(len);
    for (auto& q : seqs) group.push_back(std::move(q));
  }
  if (group.empty()) return;
  // Each row computes its tokens after the cached prefix, left-padded to the longest.
  int32_t cols = 0;
  for (const auto& q : group) cols = std::max(cols, static_cast<int32_t>(q->tokens.size()) - q->cached);
  plan.prefill_cols = cols;
  for (const auto& q : group) {
    const Request& r = *q->owner->request;
    const auto computed = std::span<const int32_t>(q->tokens).subspan(static_cast<size_t>(q->cached));
    parallel::append_left_padded(plan.prefill_tokens, plan.prefill_pad, cols, computed);
    plan.prefill_slots.push_back(q->slot);
    plan.prefill_cached.push_back(q->cached);
    plan.prefill_sampling.push_back(wire_sampling(r.sampling, q->index));
    plan.prefill_history_len.push_back(q->n_generated);
    plan.prefill_history.insert(plan.prefill_history.end(), q->tokens.end() - q->n_generated, q->tokens.end());
    // The sequence's SamplingLists, each list only when its setting is on.
    plan.prefill_bias_len.push_back(static_cast<int32_t>(r.logit_bias.size()));
    plan.prefill_bias.insert(plan.prefill_bias.end(), r.logit_bias.begin(), r.logit_bias.end());
    const bool min_tokens = r.sampling.min_tokens > 0;
    plan.prefill_stop_len.push_back(min_tokens ? static_cast<int32_t>(r.stop_ids.size()) : 0);
    if (min_tokens) plan.prefill_stop.insert(plan.prefill_stop.end(), r.stop_ids.begin(), r.stop_ids.end());
    if (r.sampling.repetition_penalty != 1.0f) {
      std::vector<int32_t> distinct(r.prompt.begin(), r.prompt.end());
      std::sort(distinct.begin(), distinct.end());
      distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      plan.prefill_prompt_len.push_back(static_cast<int32_t>(distinct.size()));
      plan.prefill_prompt.insert(plan.prefill_prompt.end(), distinct.begin(), distinct.end());
    } else {
      plan.prefill_prompt_len.push_back(0);
    }
    pad_tokens += cols - static_cast<int64_t>(computed.size());
  }
  // No row with a list: no lengths at all (the wire's "every list empty").
  for (auto* lens : {&plan.prefill_bias_len, &plan.prefill_stop_len, &plan.prefill_prompt_len})
    if (std::all_of(lens->begin(), lens->end(), [](int32_t n) { return n == 0; })) lens->clear();
  // The workers answer [prefill rows..., decode rows...]: running_ keeps that order.
  running_.insert(running_.begin(), std::make_move_iterator(group.begin()), std::make_move_iterator(group.end()));
  TESSERA_METRIC(observe_padding_tokens(pad_tokens));
  (void)pad_tokens;
}

void Scheduler::grow() {
  for (auto& s : running_) {
    if (s->preempted) continue;
    while (!blocks_->append_token(static_cast<uint64_t>(s->slot))) {
      // No block left: the most recently admitted running sequence gives its blocks up (perhaps s itself).
      Sequence* youngest = nullptr;
      for (auto& q : running_)
        if (!q->preempted && (youngest == nullptr || q->admission > youngest->admission)) youngest = q.get();
      TESSERA_CHECK(youngest != nullptr);
      preempt(*youngest);
      if (youngest == s.get()) break;
    }
  }
  // Preempted sequences wait ahead of every request, the earliest admitted first.
  std::vector<std::unique_ptr<Sequence>> out;
  for (auto& q : running_)
    if (q->preempted) out.push_back(std::move(q));
  if (out.empty()) return;
  std::erase_if(running_, [](const auto& q) { return q == nullptr; });
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->admission < b->admission; });
  preempted_.insert(preempted_.begin(), std::make_move_iterator(out.begin()), std::make_move_iterator(out.end()));
}

void Scheduler::preempt(Sequence& s) {
  blocks_->free(static_cast<uint64_t>(s.slot));
  slots_.release(s.slot);
  pending_release_.push_back(s.slot);
  s.slot = -1;
  s.length = 0;
  s.preempted = true;
  TESSERA_METRIC(count_preemption());
  std::lock_guard lk(mu_);
  ++stats_.preemptions;
}

// One table row per plan row (prefill rows, then decode rows), as wide as the longest, -1 past a row's blocks.
void Scheduler::add_tables(parallel::StepPlan& plan, const std::vector<const Sequence*>& rows) const {
  size_t width = 1;
  for (const Sequence* q : rows) width = std::max(width, blocks_->block_table(static_cast<uint64_t>(q->slot)).size());
  plan.table_width = static_cast<int32_t>(width);
  plan.tables.assign(rows.size() * width, -1);
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& t = blocks_->block_table(static_cast<uint64_t>(rows[r]->slot));
    std::copy(t.begin(), t.end(), plan.tables.begin() + static_cast<std::ptrdiff_t>(r * width));
  }
}

void Scheduler::reap(SteadyClock::time_point now) {
  for (auto* list : {&running_, &preempted_}) {
    for (auto& s : *list) {
      const Request& r = *s->owner->request;
      if (r.cancelled())
        finish(*s, FinishReason::kAbort, "cancelled", now);
      else if (now >= r.deadline)
        finish(*s, FinishReason::kAbort, "request timed out", now);
    }
    std::erase_if(*list, [](const auto& s) { return s->done; });
  }
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
  generation_tokens_ += result.tokens.size();
  (void)step_tokens;

  for (size_t row = 0; row < result.tokens.size(); ++row) {
    const bool prefill = row < n_prefill_rows;
    Sequence& s = *running_[row];
    // The step wrote the row's tokens into the cache: a prefill the whole sequence so far, a decode last_token.
    s.length = prefill ? static_cast<int32_t>(s.tokens.size()) : s.length + 1;
    Active& a = *s.owner;
    const Request& r = *a.request;
    TokenEvent ev;
    ev.seq = s.index;
    ev.token = result.tokens[row];
    ev.logprob = row < result.logprobs.size() ? result.logprobs[row] : 0.0f;
    if (s.n_generated == 0) ev.cached_tokens = s.cached;
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
    s.tokens.push_back(ev.token);
    // Its full blocks join the prefix cache before it may finish (a prompt's blocks outlive a 1-token answer).
    blocks_->cache_full_blocks(static_cast<uint64_t>(s.slot),
                               std::span<const int32_t>(s.tokens).first(static_cast<size_t>(s.length)));
    // Before min_tokens nothing ends a sequence but its length: the workers mask the stop ids and the sink
    // matches no stop string until then (SequenceText).
    const bool may_stop = s.n_generated >= r.sampling.min_tokens;
    if (may_stop && (verdict == TokenVerdict::kStop ||
                     std::find(r.stop_ids.begin(), r.stop_ids.end(), ev.token) != r.stop_ids.end()))
      finish(s, FinishReason::kStop, "", now);
    else if (s.n_generated >= r.max_tokens)
      finish(s, FinishReason::kLength, "", now);
  }
  std::erase_if(running_, [](const auto& s) { return s->done; });
}

void Scheduler::finish(Sequence& s, FinishReason reason, const std::string& message, SteadyClock::time_point now) {
  TESSERA_CHECK(!s.done);
  s.done = true;
  if (s.slot >= 0) {  // a preempted sequence holds neither a slot nor blocks
    blocks_->free(static_cast<uint64_t>(s.slot));
    slots_.release(s.slot);
    pending_release_.push_back(s.slot);
    s.slot = -1;
  }
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
  for (auto* list : {&running_, &preempted_}) {
    for (auto& s : *list)
      if (!s->done) finish(*s, reason, message, now);
    list->clear();
  }
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
  stats_.prompt_tokens = prompt_tokens_;
  stats_.generation_tokens = generation_tokens_;
  stats_.waiting = static_cast<int32_t>(waiting_.size());
  stats_.kv_usage = blocks_ ? blocks_->usage() : 0.0;
  if (blocks_) {
    stats_.prefix_cache_queries = blocks_->prefix_cache_queries();
    stats_.prefix_cache_hits = blocks_->prefix_cache_hits();
  }
  TESSERA_METRIC(set_running(stats_.running));
  TESSERA_METRIC(set_waiting(stats_.waiting));
  TESSERA_METRIC(set_kv_usage(stats_.kv_usage));
}

}  // namespace tessera::coordinator
