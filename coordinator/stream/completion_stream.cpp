// coordinator/stream/completion_stream.cpp — OpenAI response bodies and SSE chunks from token events.
#include "coordinator/stream/completion_stream.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace tessera::coordinator::stream {
namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse(const std::string& data) { return "data: " + data + "\n\n"; }

class PromptSink final : public RequestSink {
 public:
  PromptSink(std::shared_ptr<CompletionJob> job, int32_t prompt) : job_(std::move(job)), prompt_(prompt) {}
  TokenVerdict on_token(const TokenEvent& ev) override { return job_->on_token(prompt_, ev); }
  void on_finish(int32_t seq, FinishReason reason, const std::string& message) override {
    job_->on_finish(prompt_, seq, reason, message);
  }

 private:
  std::shared_ptr<CompletionJob> job_;
  int32_t prompt_;
};

}  // namespace

CompletionJob::CompletionJob(JobOptions options, const tokenizer::Tokenizer* tokenizer,
                             std::shared_ptr<http::Exchange> exchange, JobHooks hooks)
    : options_(std::move(options)), tokenizer_(tokenizer), exchange_(std::move(exchange)), hooks_(std::move(hooks)) {
  choices_.resize(options_.prompt_tokens.size() * static_cast<size_t>(options_.n));
  cached_.assign(options_.prompt_tokens.size(), -1);
  for (Choice& c : choices_) c.text.emplace(tokenizer_, options_.stop, options_.min_tokens);
}

std::shared_ptr<RequestSink> CompletionJob::sink(int32_t prompt_index) {
  return std::make_shared<PromptSink>(shared_from_this(), prompt_index);
}

void CompletionJob::set_requests(const std::vector<std::shared_ptr<Request>>& requests) {
  std::lock_guard lock(mu_);
  requests_.assign(requests.begin(), requests.end());
}

void CompletionJob::abandon() {
  std::vector<std::shared_ptr<Request>> live;
  {
    std::lock_guard lock(mu_);
    done_ = true;
    abandoned_ = true;
    for (auto& w : requests_)
      if (auto r = w.lock()) live.push_back(r);
  }
  for (auto& r : live) r->cancel();
}

void CompletionJob::cancel_all() {
  std::vector<std::shared_ptr<Request>> live;
  {
    std::lock_guard lock(mu_);
    for (auto& w : requests_)
      if (auto r = w.lock()) live.push_back(r);
  }
  for (auto& r : live) r->cancel();
}

void CompletionJob::emit_locked(std::string bytes) {
  if (!begun_) {
    pending_.push_back(std::move(bytes));
  } else {
    exchange_->write(std::move(bytes));
  }
}

void CompletionJob::begin() {
  if (!options_.stream) return;
  std::lock_guard lock(mu_);
  if (abandoned_) return;
  if (hooks_.on_status) hooks_.on_status(200);
  exchange_->start_stream(200, "text/event-stream", {});
  for (size_t i = 0; i < choices_.size(); ++i) {
    const auto index = static_cast<int32_t>(i);
    if (options_.chat) {
      json j = json::parse(chunk_head());
      j["choices"] = json::array({{{"index", index},
                                   {"delta", {{"role", "assistant"}, {"content", ""}}},
                                   {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}});
      exchange_->write(sse(dump(j)));
    } else if (options_.echo) {
      exchange_->write(sse(stream_chunk(index, options_.echo_texts[i / options_.n], 0, 0, nullptr)));
    }
  }
  begun_ = true;
  for (auto& b : pending_) exchange_->write(std::move(b));
  pending_.clear();
  if (tail_ready_) exchange_->end();
}

std::string CompletionJob::chunk_head() const {
  json j = {{"id", options_.id},
            {"object", options_.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", options_.created},
            {"model", options_.model}};
  return dump(j);
}

std::string CompletionJob::token_text(int32_t id) const {
  if (!tokenizer_) return "token_id:" + std::to_string(id);
  return tokenizer_->decode(std::span<const int32_t>(&id, 1), false);
}

std::string CompletionJob::logprobs_json(const Choice& c, size_t from, size_t text_offset) const {
  json j;
  if (options_.chat) {
    json content = json::array();
    for (size_t t = from; t < c.lp_tokens.size(); ++t) {
      auto entry = [&](int32_t id, float lp) {
        const std::string s = token_text(id);
        json bytes = json::array();
        if (tokenizer_)
          for (unsigned char b : tokenizer_->token_bytes(id)) bytes.push_back(b);
        return json{{"token", s}, {"logprob", lp}, {"bytes", bytes}};
      };
      json e = entry(c.lp_tokens[t], c.lp_values[t]);
      json top = json::array();
      for (const auto& [id, lp] : c.lp_top[t]) top.push_back(entry(id, lp));
      e["top_logprobs"] = top;
      content.push_back(e);
    }
    j = {{"content", content}};
  } else {
    json tokens = json::array(), values = json::array(), tops = json::array(), offsets = json::array();
    size_t offset = text_offset;
    for (size_t t = from; t < c.lp_tokens.size(); ++t) {
      const std::string s = token_text(c.lp_tokens[t]);
      tokens.push_back(s);
      values.push_back(c.lp_values[t]);
      json top = json::object();
      for (const auto& [id, lp] : c.lp_top[t]) top[token_text(id)] = lp;
      tops.push_back(top);
      offsets.push_back(offset);
      offset += s.size();
    }
    j = {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}};
  }
  return dump(j);
}

std::string CompletionJob::stream_chunk(int32_t index, const std::string& text, size_t lp_from, size_t ids_from,
                                        const char* finish_reason) const {
  json j = json::parse(chunk_head());
  const Choice& c = choices_[static_cast<size_t>(index)];
  json choice = {{"index", index}};
  if (options_.chat) {
    choice["delta"] = text.empty() && finish_reason ? json::object() : json{{"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] =
      options_.logprobs && lp_from < c.lp_tokens.size() ? json::parse(logprobs_json(c, lp_from, 0)) : json(nullptr);
  choice["finish_reason"] = finish_reason ? json(finish_reason) : json(nullptr);
  if (options_.return_token_ids)
    choice["token_ids"] = std::vector<int32_t>(c.token_ids.begin() + static_cast<int64_t>(ids_from), c.token_ids.end());
  j["choices"] = json::array({choice});
  return dump(j);
}

std::string CompletionJob::usage_json() const {
  int64_t prompt = 0, completion = 0, cached = 0;
  for (int32_t p : options_.prompt_tokens) prompt += p;
  for (int32_t c : cached_) cached += std::max(c, 0);
  for (const Choice& c : choices_) completion += static_cast<int64_t>(c.token_ids.size());
  return dump(json{{"prompt_tokens", prompt},
                   {"completion_tokens", completion},
                   {"total_tokens", prompt + completion},
                   {"prompt_tokens_details", {{"cached_tokens", cached}}}});
}

TokenVerdict CompletionJob::on_token(int32_t prompt_index, const TokenEvent& ev) {
  {
    std::lock_guard lock(mu_);
    const size_t index = static_cast<size_t>(prompt_index) * options_.n + static_cast<size_t>(ev.seq);
    if (done_ || index >= choices_.size()) return TokenVerdict::kContinue;  // abandoned: cancelled, reaped as abort
    Choice& c = choices_[index];
    if (c.finished || c.stop_seen) return TokenVerdict::kStop;
    // The prompt's cached tokens, once per prompt (its n sequences share the prompt: the first one's count).
    if (ev.cached_tokens >= 0 && cached_[static_cast<size_t>(prompt_index)] < 0)
      cached_[static_cast<size_t>(prompt_index)] = ev.cached_tokens;
    if (!has_first_token_) {
      has_first_token_ = true;
      first_token_ = std::chrono::steady_clock::now();
    }
    // A stop_token_id ends the sequence (the scheduler decides, from min_tokens on) and, like EOS, adds no text.
    const bool stop_token = static_cast<int32_t>(c.token_ids.size()) + 1 >= options_.min_tokens &&
                            std::find(options_.stop_token_ids.begin(), options_.stop_token_ids.end(), ev.token) !=
                                options_.stop_token_ids.end();
    const std::string delta = stop_token ? std::string() : c.text->push(ev.token);
    c.token_ids.push_back(ev.token);
    if (options_.logprobs) {
      c.lp_tokens.push_back(ev.token);
      c.lp_values.push_back(ev.logprob);
      c.lp_top.push_back(ev.top_logprobs);
    }
    const bool stopped = c.text->stopped();
    if (options_.stream) {
      // One chunk per token, in the step that sampled it, even when its text is held back (half a UTF-8
      // character, a possible stop-string prefix, a special token): the text is then "" and comes with a
      // later chunk. A client counts chunks as tokens (vLLM's server and benchmark do the same); skipping the
      // empty ones made a two-token character look like one token arriving after two steps.
      emit_locked(
          sse(stream_chunk(static_cast<int32_t>(index), delta, c.lp_sent, c.ids_sent, stopped ? "stop" : nullptr)));
      c.lp_sent = c.lp_tokens.size();
      c.ids_sent = c.token_ids.size();
    } else {
      c.content += delta;
    }
    if (stopped) {
      // The text is complete (a streamed chunk said "stop" already): the scheduler finishes this sequence (kStop)
      // on this verdict, in this step, and counts it before its on_finish ends the choice — so the answer is
      // never complete before the request is counted.
      c.stop_seen = true;
      return TokenVerdict::kStop;
    }
  }
  return TokenVerdict::kContinue;
}

void CompletionJob::on_finish(int32_t prompt_index, int32_t seq, FinishReason reason, const std::string& message) {
  std::lock_guard lock(mu_);
  const size_t index = static_cast<size_t>(prompt_index) * options_.n + static_cast<size_t>(seq);
  if (done_ || index >= choices_.size()) return;
  Choice& c = choices_[index];
  if (c.finished) return;
  c.finished = true;
  if (c.stop_seen) {  // ended by its stop string (on_token): nothing more to send for it
    c.finish_reason = "stop";
    if (++n_finished_ == static_cast<int32_t>(choices_.size())) complete_locked();
    return;
  }
  c.finish_reason = finish_reason_name(reason);
  const std::string rest = c.text->finish();
  if (reason == FinishReason::kError && error_.empty()) error_ = message.empty() ? "generation failed" : message;
  if (options_.stream) {
    if (reason != FinishReason::kError) {
      emit_locked(sse(stream_chunk(static_cast<int32_t>(index), rest, c.lp_sent, c.ids_sent, c.finish_reason.c_str())));
      c.lp_sent = c.lp_tokens.size();
      c.ids_sent = c.token_ids.size();
    }
  } else {
    c.content += rest;
  }
  ++n_finished_;
  if (n_finished_ == static_cast<int32_t>(choices_.size())) complete_locked();
}

void CompletionJob::report_done_locked(int status) const {
  if (!hooks_.on_done) return;
  JobSummary s;
  s.status = status;
  for (int32_t p : options_.prompt_tokens) s.prompt_tokens += p;
  for (int32_t c : cached_) s.cached_tokens += std::max(c, 0);
  for (const Choice& c : choices_) s.completion_tokens += static_cast<int64_t>(c.token_ids.size());
  if (has_first_token_) s.ttft_s = std::chrono::duration<double>(first_token_ - created_).count();
  hooks_.on_done(s);
}

void CompletionJob::complete_locked() {
  done_ = true;
  if (options_.stream) {
    report_done_locked(200);  // its status went out with the first chunk
    if (!error_.empty()) emit_locked(sse(hooks_.internal_error(error_).body));
    if (options_.include_usage) {
      json j = json::parse(chunk_head());
      j["choices"] = json::array();
      j["usage"] = json::parse(usage_json());
      emit_locked(sse(dump(j)));
    }
    emit_locked(sse("[DONE]"));
    if (begun_) {
      exchange_->end();
    } else {
      tail_ready_ = true;
    }
    return;
  }
  if (!error_.empty()) {
    http::HttpResponse r = hooks_.internal_error(error_);
    if (hooks_.on_status) hooks_.on_status(r.status);
    report_done_locked(r.status);
    exchange_->respond(std::move(r));
    return;
  }
  report_done_locked(200);
  json j = json::parse(chunk_head());
  j["object"] = options_.chat ? "chat.completion" : "text_completion";
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    json choice = {{"index", static_cast<int64_t>(i)}};
    if (options_.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.content}};
    } else {
      const std::string echo = options_.echo ? options_.echo_texts[i / options_.n] : "";
      choice["text"] = echo + c.content;
    }
    const size_t offset = options_.echo ? options_.echo_texts[i / options_.n].size() : 0;
    choice["logprobs"] = options_.logprobs ? json::parse(logprobs_json(c, 0, offset)) : json(nullptr);
    choice["finish_reason"] = c.finish_reason;
    if (options_.return_token_ids) choice["token_ids"] = c.token_ids;
    choices.push_back(choice);
  }
  j["choices"] = choices;
  j["usage"] = json::parse(usage_json());
  if (hooks_.on_status) hooks_.on_status(200);
  exchange_->respond({200, "application/json", dump(j), {}});
}

}  // namespace tessera::coordinator::stream
