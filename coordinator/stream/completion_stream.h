// coordinator/stream/completion_stream.h — the last stage: token events of one API call → its HTTP answer.
//
// In: TokenEvents and finishes from the scheduler thread, for each of the call's Requests (one per prompt,
// each with n sequences). Out: either OpenAI server-sent events as they come (completions: text deltas;
// chat: a first chunk with the role, then content deltas; finish_reason in each choice's last chunk; a usage
// chunk when asked; `data: [DONE]`), or one JSON response when every sequence has finished. A stream has one
// chunk per sampled token, sent in the step that sampled it, with text "" while SequenceText holds the text back.
// Choice index = prompt index * n + sequence. Text goes through SequenceText (whole UTF-8 characters only,
// stop strings matched on the text and cut). A sequence whose text hits a stop string answers kStop to on_token,
// and the scheduler finishes it there (each of n siblings on its own); a client that disconnects cancels every
// request of the call.
// Thread-safety: the sinks may be called from any thread (in practice the scheduler's); cancel_all() from
// any thread. The job only queues bytes on the Exchange, it never blocks on the network.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/http/server.h"
#include "coordinator/request.h"
#include "coordinator/stream/sequence_text.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace tessera::coordinator::stream {

struct JobOptions {
  bool chat = false, stream = false, include_usage = false, logprobs = false, echo = false;
  bool return_token_ids = false;
  int32_t n = 1;
  std::string id, model;
  int64_t created = 0;
  std::vector<std::string> stop;
  int32_t min_tokens = 0;               // stop strings do not end a sequence before this many tokens
  std::vector<int32_t> stop_token_ids;  // their text is left out, like EOS's (the scheduler ends the sequence)
  std::vector<int32_t> prompt_tokens;   // per prompt
  std::vector<std::string> echo_texts;  // per prompt (when echo)
};

// What the access log records of a finished job.
struct JobSummary {
  int status = 200;  // the HTTP status the answer got (a stream that failed midway is still 200)
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double ttft_s = -1;  // job creation → its first token; -1 when none came
};

struct JobHooks {
  // The HTTP answer for an internal failure (status + OpenAI body), from the api layer's one mapping.
  std::function<http::HttpResponse(const std::string& message)> internal_error;
  // Called once with the status the answer got (for the HTTP request counter).
  std::function<void(int status)> on_status;
  // Called once when the answer is complete (not for an abandoned job), with the job's mutex held: keep it short.
  std::function<void(const JobSummary&)> on_done;
};

class CompletionJob : public std::enable_shared_from_this<CompletionJob> {
 public:
  CompletionJob(JobOptions options, const tokenizer::Tokenizer* tokenizer, std::shared_ptr<http::Exchange> exchange,
                JobHooks hooks);

  // The sink for prompt `prompt_index`'s Request.
  std::shared_ptr<RequestSink> sink(int32_t prompt_index);
  // The requests, once made (held weakly: a request owns its sink, which owns this job).
  void set_requests(const std::vector<std::shared_ptr<Request>>& requests);
  // Streaming: sends the header and the chunks that precede the first token (role, echo).
  void begin();
  // Submission failed: drop everything (the api layer answers with the error) and cancel what was submitted.
  void abandon();
  void cancel_all();

  TokenVerdict on_token(int32_t prompt_index, const TokenEvent& ev);  // kStop: a stop string ended the sequence
  void on_finish(int32_t prompt_index, int32_t seq, FinishReason reason, const std::string& message);

 private:
  struct Choice {
    std::optional<SequenceText> text;
    std::string content;  // released text (non-streaming)
    std::vector<int32_t> token_ids;
    std::vector<int32_t> lp_tokens;
    std::vector<float> lp_values;
    std::vector<std::vector<std::pair<int32_t, float>>> lp_top;
    size_t lp_sent = 0, ids_sent = 0;  // streamed so far
    bool finished = false;
    bool stop_seen = false;  // its stop string arrived: the text is complete, the scheduler's on_finish ends it
    std::string finish_reason;
  };
  std::string token_text(int32_t id) const;
  void emit_locked(std::string bytes);  // an SSE event; held back until begin() has sent the header
  std::string chunk_head() const;       // id, object, created, model
  std::string stream_chunk(int32_t index, const std::string& text, size_t lp_from, size_t ids_from,
                           const char* finish_reason) const;
  std::string logprobs_json(const Choice& c, size_t from, size_t text_offset) const;
  std::string usage_json() const;
  void complete_locked();  // every sequence finished: final body or the stream's tail

  JobOptions options_;
  const tokenizer::Tokenizer* tokenizer_;
  std::shared_ptr<http::Exchange> exchange_;
  JobHooks hooks_;
  std::mutex mu_;
  std::vector<Choice> choices_;
  std::vector<int32_t> cached_;  // per prompt: its tokens the prefix cache held (-1 until its first token)
  std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now(), first_token_;
  bool has_first_token_ = false;
  void report_done_locked(int status) const;
  std::vector<std::weak_ptr<Request>> requests_;
  int32_t n_finished_ = 0;
  std::string error_;
  bool done_ = false;
  bool begun_ = false, tail_ready_ = false, abandoned_ = false;
  std::vector<std::string> pending_;
};

}  // namespace tessera::coordinator::stream
