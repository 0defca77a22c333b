// coordinator/api/openai_request.h — an OpenAI completions / chat-completions body, parsed and validated.
//
// In: the parsed JSON body, the serving limits and the tokenizer (null for a model without one: token-id
// prompts only). Out: a CompletionParams with token-id prompts and sampling settings ready for Requests.
// Every bad field throws ApiError(kInvalid) naming the field (or kModelNotFound for `model`); unknown fields
// are ignored. A prompt that does not fit the context leaves room for no token → 400 with the token counts.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/tokenizer/tokenizer.h"
#include "common/sampling.h"

namespace tessera::coordinator::api {

struct ApiLimits {
  std::string model_name;
  int64_t vocab = 0;
  int32_t max_ctx = 2048;  // prompt + generated tokens of one sequence
  int32_t max_prompt_tokens = 2048;
  int32_t max_tokens_limit = 2048;
  int32_t default_max_tokens = 16;
  int32_t max_n = 8;
};

struct CompletionParams {
  bool chat = false;
  std::vector<std::vector<int32_t>> prompts;  // token ids, one per prompt (chat: one)
  std::vector<std::string> echo_texts;        // per prompt, when echo
  int32_t max_tokens = 16;
  int32_t n = 1;
  SamplingParams sampling;  // seed: the request's, or random
  bool logprobs = false;    // return logprobs (sampling.n_logprobs of top alternatives)
  bool echo = false, ignore_eos = false, stream = false, include_usage = false, return_token_ids = false;
  std::vector<std::string> stop;
  std::vector<LogitBias> logit_bias;    // distinct tokens (a JSON object's keys), in the vocabulary
  std::vector<int32_t> stop_token_ids;  // end a sequence like EOS, even with ignore_eos
  std::string user;
};

// The deepest nesting of arrays and objects a request body may have. Bounded so that nothing that walks a
// parsed body (dump, copy, comparison) recurses as deep as a client likes; OpenAI bodies need a handful of levels.
inline constexpr int kMaxJsonDepth = 64;

// A request body as JSON: ApiError(kInvalid) when it is empty, malformed, or nested deeper than kMaxJsonDepth
// (found while parsing: a deeper value is never built).
nlohmann::json parse_request_body(std::string_view body);

// A client's value as it may appear in an error message, bounded and never recursive: a scalar as JSON (a
// string cut to 64 bytes), an array or object by its kind and size.
std::string describe_value(const nlohmann::json& value);

CompletionParams parse_completion(const nlohmann::json& body, bool chat, const ApiLimits& limits,
                                  const tokenizer::Tokenizer* tokenizer);

// Chat messages → ChatMessages (content: a string or a list of {"type": "text", "text": ...} parts).
std::vector<tokenizer::ChatMessage> parse_messages(const nlohmann::json& messages);

}  // namespace tessera::coordinator::api
