// fuzz/fuzz_openai_request.cpp — the OpenAI request parser (coordinator/api/openai_request.h) on arbitrary bodies.
//
// Feeds: the input as a request body (up to the server's 1 MiB body limit: scripts/fuzz.sh passes -max_len) to
// parse_request_body(); what parses goes to parse_completion() as /v1/completions and as /v1/chat/completions, and
// its "messages" to parse_messages(). The tokenizer: TESSERA_FUZZ_TOKENIZER (a .gguf, a tokenizer.json or a
// directory holding one; scripts/fuzz.sh points it at fuzz/data/tokenizer), else none (token-id prompts only).
// Must hold: only api::ApiError and tessera::Error are thrown; an ApiError is a 400 or a 404 (model) whose body
// error_body() renders; a parsed body is nested at most kMaxJsonDepth deep; an accepted request is within the
// limits (prompts non-empty, ids in the vocabulary, prompt + max_tokens within the context, n, sampling ranges,
// stop strings).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "coordinator/api/errors.h"
#include "coordinator/api/openai_request.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "fuzz/fuzz_support.h"

namespace {

namespace api = tessera::coordinator::api;
using nlohmann::json;

constexpr const char* kTarget = "fuzz_openai_request";

std::unique_ptr<tessera::tokenizer::Tokenizer> g_tokenizer;
api::ApiLimits g_limits;

// Nesting depth of arrays and objects (a scalar is 0), without recursion.
int nesting(const json& root) {
  int deepest = 0;
  std::vector<std::pair<const json*, int>> todo = {{&root, 0}};
  while (!todo.empty()) {
    const auto [j, depth] = todo.back();
    todo.pop_back();
    if (!j->is_structured()) continue;
    deepest = std::max(deepest, depth + 1);
    for (const json& child : *j) todo.emplace_back(&child, depth + 1);
  }
  return deepest;
}

void check_error(const api::ApiError& e) {
  const int status = api::status_of(e.kind());
  FUZZ_ASSERT(kTarget, status == 400 || (status == 404 && e.kind() == api::ErrorKind::kModelNotFound),
              "status " + std::to_string(status) + " for: " + e.what());
  const std::string body = api::error_body(e);
  FUZZ_ASSERT(kTarget, json::accept(body), "error body is not JSON: " + body);
  tessera::fuzz::note(kTarget, e.what());
}

void check_params(const api::CompletionParams& p, bool chat) {
  const api::ApiLimits& l = g_limits;
  FUZZ_ASSERT(kTarget, !p.prompts.empty() && p.prompts.size() <= 64 && (!chat || p.prompts.size() == 1),
              std::to_string(p.prompts.size()) + " prompts");
  const int64_t prompt_limit = std::min<int64_t>(l.max_prompt_tokens, l.max_ctx - 1);
  for (const auto& prompt : p.prompts) {
    const auto len = static_cast<int64_t>(prompt.size());
    FUZZ_ASSERT(kTarget, len >= 1 && len <= prompt_limit, "prompt of " + std::to_string(len) + " tokens");
    FUZZ_ASSERT(kTarget, len + p.max_tokens <= l.max_ctx, "prompt + max_tokens past the context");
    for (int32_t id : prompt) FUZZ_ASSERT(kTarget, id >= 0 && id < l.vocab, "token id " + std::to_string(id));
  }
  FUZZ_ASSERT(kTarget, p.max_tokens >= 1 && p.max_tokens <= l.max_tokens_limit, std::to_string(p.max_tokens));
  FUZZ_ASSERT(kTarget, p.n >= 1 && p.n <= l.max_n, std::to_string(p.n));
  const auto& s = p.sampling;
  FUZZ_ASSERT(kTarget, s.temperature >= 0.0f && s.temperature <= 2.0f, std::to_string(s.temperature));
  FUZZ_ASSERT(kTarget, s.top_p > 0.0f && s.top_p <= 1.0f, std::to_string(s.top_p));
  FUZZ_ASSERT(kTarget, s.top_k >= -1, std::to_string(s.top_k));
  FUZZ_ASSERT(kTarget, s.presence_penalty >= -2.0f && s.presence_penalty <= 2.0f, "presence_penalty");
  FUZZ_ASSERT(kTarget, s.frequency_penalty >= -2.0f && s.frequency_penalty <= 2.0f, "frequency_penalty");
  FUZZ_ASSERT(kTarget, s.n_logprobs >= 0 && s.n_logprobs <= tessera::kMaxLogprobs, "n_logprobs");
  FUZZ_ASSERT(kTarget, p.stop.size() <= 16, std::to_string(p.stop.size()) + " stop strings");
  for (const auto& stop : p.stop) FUZZ_ASSERT(kTarget, !stop.empty() && stop.size() <= 256, "stop string");
  FUZZ_ASSERT(kTarget, !p.echo || p.echo_texts.size() == p.prompts.size(), "echo texts");
  FUZZ_ASSERT(kTarget, p.chat == chat && (!chat || !p.echo), "chat / echo");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_limits.model_name = "m";
  g_limits.vocab = 49152;
  g_limits.max_ctx = 2048;
  g_limits.max_prompt_tokens = 2048;
  g_limits.max_tokens_limit = 2048;
  g_limits.default_max_tokens = 16;
  g_limits.max_n = 8;
  if (const char* path = std::getenv("TESSERA_FUZZ_TOKENIZER"); path != nullptr && *path != '\0') {
    try {
      g_tokenizer =
          std::make_unique<tessera::tokenizer::Tokenizer>(tessera::tokenizer::Tokenizer::from_model_path(path));
    } catch (const tessera::Error& e) {
      std::fprintf(stderr, "%s: TESSERA_FUZZ_TOKENIZER: %s\n", kTarget, e.what());
      std::exit(2);
    }
    // As a server whose model's vocabulary is the tokenizer's (SmolLM2: 49152 both).
    g_limits.vocab = g_tokenizer->vocab_size();
    std::fprintf(stderr, "%s: tokenizer %s (%lld ids)\n", kTarget, path, static_cast<long long>(g_limits.vocab));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  json body;
  try {
    body = api::parse_request_body(tessera::fuzz::as_view(data, size));
  } catch (const api::ApiError& e) {
    check_error(e);
    return 0;
  }
  FUZZ_ASSERT(kTarget, nesting(body) <= api::kMaxJsonDepth, "parsed body nested " + std::to_string(nesting(body)));
  (void)api::describe_value(body);
  if (body.is_structured())
    for (const json& v : body) (void)api::describe_value(v);

  for (bool chat : {false, true}) {
    try {
      check_params(api::parse_completion(body, chat, g_limits, g_tokenizer.get()), chat);
    } catch (const api::ApiError& e) {
      check_error(e);
    } catch (const tessera::Error& e) {
      tessera::fuzz::note(kTarget, std::string("tessera::Error: ") + e.what());
    }
  }
  if (body.is_object() && body.contains("messages")) {
    try {
      (void)api::parse_messages(body["messages"]);
    } catch (const api::ApiError& e) {
      check_error(e);
    }
  }
  return 0;
}
