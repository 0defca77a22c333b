// coordinator/generate.cpp — `tessera generate` and the engine tests: the requests through the serving Scheduler.
#include "coordinator/generate.h"

#include <algorithm>
#include <memory>

#include "common/check.h"
#include "coordinator/request.h"
#include "coordinator/scheduler/scheduler.h"

namespace tessera::coordinator {
namespace {

// One request's tokens as they come; the scheduler decides when and why it finishes.
class CollectingSink final : public RequestSink {
 public:
  CollectingSink(size_t index, GenerateResult& out, const TokenCallback& on_token)
      : index_(index), out_(out), on_token_(on_token) {}
  TokenVerdict on_token(const TokenEvent& ev) override {
    out_.tokens.push_back(ev.token);
    out_.logprobs.push_back(ev.logprob);
    if (ev.cached_tokens >= 0) out_.cached_tokens = ev.cached_tokens;
    if (on_token_) on_token_(index_, ev.token);
    return TokenVerdict::kContinue;
  }
  void on_finish(int32_t, FinishReason reason, const std::string& message) override {
    out_.finish_reason = finish_reason_name(reason);
    message_ = message;
  }
  const std::string& message() const { return message_; }

 private:
  size_t index_;
  GenerateResult& out_;
  const TokenCallback& on_token_;
  std::string message_;
};

}  // namespace

std::vector<GenerateResult> generate(parallel::Dispatcher& dispatcher, const ModelLimits& limits,
                                     const std::vector<GenerateRequest>& requests, const TokenCallback& on_token,
                                     GenerateStats* stats, const BatchOptions& options) {
  if (requests.empty()) return {};
  // One slot per request, each as long as the longest request needs (at most the model's context, which
  // submit() checks), and no limit on a group's size or padding: the requests start as one pre-padded group.
  int64_t need = 2;
  for (const auto& r : requests)
    need = std::max<int64_t>(need, static_cast<int64_t>(r.prompt.size()) + std::max(r.max_tokens, 0));
  SchedulerOptions so;
  so.n_slots = options.max_running > 0 ? std::min<int32_t>(options.max_running, static_cast<int32_t>(requests.size()))
                                       : static_cast<int32_t>(requests.size());
  so.block_size = options.block_size;
  so.prefix_caching = options.prefix_caching;
  so.kv_bytes = options.kv_bytes;
  so.max_ctx = static_cast<int32_t>(std::clamp<int64_t>(need, 2, std::max<int64_t>(limits.max_ctx, 2)));
  so.max_waiting = static_cast<int32_t>(requests.size());
  so.token_budget = INT32_MAX;
  so.max_pad_fraction = 1.0;
  so.vocab = limits.vocab;
  Scheduler scheduler(dispatcher, so, nullptr);

  std::vector<GenerateResult> results(requests.size());
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerateRequest& g = requests[i];
    auto r = std::make_shared<Request>();
    r->id = i;
    r->prompt = g.prompt;
    r->max_tokens = g.max_tokens;
    r->sampling = g.sampling;
    r->stop_ids = g.stop_ids;
    r->logit_bias = g.logit_bias;
    sinks.push_back(std::make_shared<CollectingSink>(i, results[i], on_token));
    r->sink = sinks.back();
    std::string why;
    if (scheduler.submit(std::move(r), &why) != SubmitStatus::kAccepted)
      throw Error("request " + std::to_string(i) + ": " + why);
  }
  // When the KV cache holds fewer slots than requests, the rest wait for a free slot (continuous batching).
  scheduler.configure();
  scheduler.begin_drain();  // run() returns once every request has finished
  scheduler.run();
  for (size_t i = 0; i < requests.size(); ++i)
    if (results[i].finish_reason != "stop" && results[i].finish_reason != "length")
      throw Error("request " + std::to_string(i) + " ended with '" + results[i].finish_reason +
                  "': " + sinks[i]->message());
  if (stats != nullptr) {
    const SchedulerStats st = scheduler.stats();
    stats->steps = st.steps;
    stats->step_seconds = st.step_seconds;
    stats->collective_seconds = st.collective_seconds;
  }
  return results;
}

}  // namespace tessera::coordinator
