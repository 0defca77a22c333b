// tests/coordinator/test_openai_request.cpp — the api stage as tables: OpenAI request bodies → CompletionParams
// (openai_request.h), every ErrorKind → its HTTP status and OpenAI error body (errors.h), and Api::handle's routes →
// the status a client gets (api.h). Each row is a body as a client sends it and what must come out: the parsed
// fields, or the status, the `param` and a piece of the message. The tokenizer is written by the test: ids 0..255
// are the bytes, 256 <|im_start|>, 257 <|im_end|>, a ChatML template without a default system message, so every
// expected prompt is spelled out byte by byte and no model is needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/api/api.h"
#include "coordinator/api/errors.h"
#include "coordinator/api/openai_request.h"
#include "coordinator/http/server.h"
#include "coordinator/request.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "tests/coordinator/byte_tokenizer.h"

namespace tessera::coordinator::api {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

constexpr int32_t kImStart = 256, kImEnd = 257;

// with_template: a tokenizer_config.json holding a ChatML template beside tokenizer.json; without it the
// tokenizer has no chat template.
tokenizer::Tokenizer load_byte_tokenizer(bool with_template) {
  return test_support::make_byte_tokenizer(
      with_template ? "api_chat" : "api_plain", {{kImStart, "<|im_start|>"}, {kImEnd, "<|im_end|>"}}, "<|im_end|>",
      with_template ? "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
                      "{{ '<|im_start|>assistant\\n' }}{% endif %}"
                    : "");
}

const tokenizer::Tokenizer& chat_tokenizer() {
  static const tokenizer::Tokenizer tok = load_byte_tokenizer(true);
  return tok;
}
const tokenizer::Tokenizer& plain_tokenizer() {
  static const tokenizer::Tokenizer tok = load_byte_tokenizer(false);
  return tok;
}

// Small limits, so that every boundary is a short body: a prompt may have 48 tokens, prompt + completion 64.
ApiLimits limits() {
  ApiLimits l;
  l.model_name = "m";
  l.vocab = 258;
  l.max_ctx = 64;
  l.max_prompt_tokens = 48;
  l.max_tokens_limit = 32;
  l.default_max_tokens = 20;
  l.max_n = 4;
  return l;
}

// The ids of `text` in the test vocabulary, with "<S>" / "<E>" standing for <|im_start|> / <|im_end|>.
Ids ids(std::string_view text) {
  Ids out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.substr(i, 3) == "<S>" || text.substr(i, 3) == "<E>") {
      out.push_back(text[i + 1] == 'S' ? kImStart : kImEnd);
      i += 2;
    } else {
      out.push_back(static_cast<uint8_t>(text[i]));
    }
  }
  return out;
}

// Table text with repeats spelled short: "${N*text}" is `text` N times, "${N,text}" the same joined by commas (text
// holds no '}'). Bodies and expected fields are plain string literals, so the tables stay cheap to compile.
std::string expand(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i, 2) != "${") {
      out += s[i++];
      continue;
    }
    size_t j = i + 2;
    int n = 0;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') n = n * 10 + (s[j++] - '0');
    const char sep = s[j];
    const size_t close = s.find('}', j);
    const std::string_view text = s.substr(j + 1, close - j - 1);
    for (int k = 0; k < n; ++k) {
      if (k > 0 && sep == ',') out += ',';
      out += text;
    }
    i = close + 1;
  }
  return out;
}

enum class Route { kCompletions, kChat };
enum class Tok { kChat, kNoTemplate, kNone };

const tokenizer::Tokenizer* tokenizer_for(Tok t) {
  switch (t) {
    case Tok::kChat:
      return &chat_tokenizer();
    case Tok::kNoTemplate:
      return &plain_tokenizer();
    case Tok::kNone:
      return nullptr;
  }
  return nullptr;
}

// What the server does with a body: parse, then validate as the route's request.
CompletionParams parse(Route route, const std::string& body, Tok tok) {
  return parse_completion(parse_request_body(body), route == Route::kChat, limits(), tokenizer_for(tok));
}

// logit_bias as [[token, bias], ...] in the order parsed (a JSON object's keys: sorted as strings).
json logit_bias_of(const CompletionParams& p) {
  json out = json::array();
  for (const LogitBias& e : p.logit_bias) out.push_back({e.token, e.bias});
  return out;
}
// Every field parse_completion sets, by its JSON name.
json fields_of(const CompletionParams& p) {
  return {{"prompts", p.prompts},
          {"max_tokens", p.max_tokens},
          {"n", p.n},
          {"temperature", p.sampling.temperature},
          {"top_p", p.sampling.top_p},
          {"top_k", p.sampling.top_k},
          {"presence_penalty", p.sampling.presence_penalty},
          {"frequency_penalty", p.sampling.frequency_penalty},
          {"min_p", p.sampling.min_p},
          {"repetition_penalty", p.sampling.repetition_penalty},
          {"min_tokens", p.sampling.min_tokens},
          {"logit_bias", logit_bias_of(p)},
          {"stop_token_ids", p.stop_token_ids},
          {"seed", p.sampling.seed},
          {"logprobs", p.logprobs},
          {"n_logprobs", p.sampling.n_logprobs},
          {"stop", p.stop},
          {"echo", p.echo},
          {"echo_texts", p.echo_texts},
          {"ignore_eos", p.ignore_eos},
          {"stream", p.stream},
          {"include_usage", p.include_usage},
          {"return_token_ids", p.return_token_ids},
          {"user", p.user}};
}

// Expected fields as JSON: each key present is compared (floats to float precision), the others are not.
// "prompt_texts" gives the prompts as ids() text instead of ids.
void expect_fields(const CompletionParams& p, const json& want) {
  const json got = fields_of(p);
  for (const auto& [key, value] : want.items()) {
    if (key == "prompt_texts") {
      std::vector<Ids> prompts;
      for (const json& t : value) prompts.push_back(ids(t.get<std::string>()));
      EXPECT_EQ(p.prompts, prompts) << key;
    } else if (!got.contains(key)) {
      ADD_FAILURE() << "the table names an unknown field '" << key << "'";
    } else if (value.is_number_float() || got[key].is_number_float()) {
      EXPECT_NEAR(got[key].get<double>(), value.get<double>(), 1e-6 * std::max(1.0, std::abs(value.get<double>())))
          << key;
    } else {
      EXPECT_EQ(got[key], value) << key;
    }
  }
}

struct Accepted {
  const char* name;
  Route route;
  const char* body;
  const char* want;  // JSON: the fields expected (fields_of's names)
  Tok tok = Tok::kChat;
};

struct Rejected {
  const char* name;
  Route route;
  const char* body;
  int status;
  const char* param;    // "" → the error names no field
  const char* message;  // a piece of the message
  Tok tok = Tok::kChat;
};

constexpr Route kCmpl = Route::kCompletions, kChat = Route::kChat;

// --- accepted bodies -----------------------------------------------------------------------------------------

const Accepted kAccepted[] = {
    // The defaults: every field the parser sets, from a body with only the prompt.
    {"completions defaults", kCmpl, R"({"prompt":"abc"})",
     R"({"prompt_texts":["abc"],"max_tokens":20,"n":1,"temperature":1,"top_p":1,"top_k":-1,"presence_penalty":0,)"
     R"("frequency_penalty":0,"logprobs":false,"n_logprobs":0,"stop":[],"echo":false,"echo_texts":[],)"
     R"("ignore_eos":false,"stream":false,"include_usage":false,"return_token_ids":false,"user":""})"},
    {"chat defaults", kChat, R"({"messages":[{"role":"user","content":"hi"}]})",
     R"({"prompt_texts":["<S>user\nhi<E>\n<S>assistant\n"],"max_tokens":20,"n":1,"temperature":1,"top_p":1,)"
     R"("top_k":-1,"logprobs":false,"n_logprobs":0,"stop":[],"echo":false,"stream":false,"return_token_ids":false})"},
    // Every accepted field with a normal value.
    {"every completions field", kCmpl,
     R"({"model":"m","prompt":"hi","max_tokens":7,"n":2,"temperature":0.7,"top_p":0.9,"top_k":40,)"
     R"("presence_penalty":0.5,"frequency_penalty":-0.5,"seed":1234,"logprobs":3,"stop":["\n","END"],)"
     R"("echo":true,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true},)"
     R"("return_token_ids":true,"user":"alice","unknown_field":null})",
     R"({"prompt_texts":["hi"],"max_tokens":7,"n":2,"temperature":0.7,"top_p":0.9,"top_k":40,)"
     R"("presence_penalty":0.5,"frequency_penalty":-0.5,"seed":1234,"logprobs":true,"n_logprobs":3,)"
     R"("stop":["\n","END"],"echo":true,"echo_texts":["hi"],"ignore_eos":true,"stream":true,"include_usage":true,)"
     R"("return_token_ids":true,"user":"alice"})"},
    {"every chat field", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"model":"m","max_completion_tokens":9,"n":3,)"
     R"("temperature":0.2,"top_p":0.5,"top_k":1,"presence_penalty":-1,"frequency_penalty":1,"seed":7,)"
     R"("logprobs":true,"top_logprobs":2,"stop":"x","ignore_eos":true,"stream":true,)"
     R"("stream_options":{"include_usage":false},"user":"bob"})",
     R"({"prompt_texts":["<S>user\nhi<E>\n<S>assistant\n"],"max_tokens":9,"n":3,"temperature":0.2,"top_p":0.5,)"
     R"("top_k":1,"presence_penalty":-1,"frequency_penalty":1,"seed":7,"logprobs":true,"n_logprobs":2,)"
     R"("stop":["x"],"ignore_eos":true,"stream":true,"include_usage":false,"user":"bob"})"},
    {"null fields are absent", kCmpl,
     R"({"prompt":"a","model":null,"temperature":null,"max_tokens":null,"seed":null,"stop":null,"user":null})",
     R"({"max_tokens":20,"temperature":1,"stop":[],"user":""})"},

    // --- the prompt, in each of its four shapes ---
    {"prompt string", kCmpl, R"({"prompt":"a b"})", R"({"prompt_texts":["a b"]})"},
    {"prompt string is not parsed for special tokens", kCmpl, R"({"prompt":"<|im_end|>"})",
     R"({"prompt_texts":["<|im_end|>"]})"},
    {"prompt list of strings", kCmpl, R"({"prompt":["ab","c"]})", R"({"prompt_texts":["ab","c"]})"},
    {"prompt token ids", kCmpl, R"({"prompt":[0,1,257]})", R"({"prompts":[[0,1,257]]})"},
    {"prompt list of token-id lists", kCmpl, R"({"prompt":[[1,2],[3]]})", R"({"prompts":[[1,2],[3]]})"},
    {"prompt list mixing strings and token ids", kCmpl, R"({"prompt":["ab",[5]]})", R"({"prompts":[[97,98],[5]]})"},
    {"64 prompts", kCmpl, R"({"prompt":[${64,[1]}]})", R"({"prompts":[${64,[1]}]})"},
    // The default max_tokens, cut to what the prompt leaves of the context (64 - 48).
    {"prompt of 48 tokens (the prompt limit)", kCmpl, R"({"prompt":"${48*a}"})",
     R"({"prompt_texts":["${48*a}"],"max_tokens":16})"},
    {"default max_tokens follows the longest prompt", kCmpl, R"({"prompt":["a","${47*a}"]})", R"({"max_tokens":17})"},
    {"token-id prompt without a tokenizer", kCmpl, R"({"prompt":[1,2]})",
     R"({"prompts":[[1,2]],"return_token_ids":true})", Tok::kNone},
    {"echo without a tokenizer has empty echo text", kCmpl, R"({"prompt":[104,105],"echo":true})",
     R"({"echo":true,"echo_texts":[""]})", Tok::kNone},
    {"echo of token ids", kCmpl, R"({"prompt":[104,105],"echo":true})", R"({"echo":true,"echo_texts":["hi"]})"},

    // --- chat messages ---
    {"chat conversation", kChat,
     R"({"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"},)"
     R"({"role":"assistant","content":"yo"}]})",
     R"({"prompt_texts":["<S>system\ns<E>\n<S>user\nhi<E>\n<S>assistant\nyo<E>\n<S>assistant\n"]})"},
    {"chat developer role is system", kChat, R"({"messages":[{"role":"developer","content":"x"}]})",
     R"({"prompt_texts":["<S>system\nx<E>\n<S>assistant\n"]})"},
    {"chat content as text parts", kChat,
     R"({"messages":[{"role":"user","content":[{"type":"text","text":"h"},{"type":"text","text":"i"}]}]})",
     R"({"prompt_texts":["<S>user\nhi<E>\n<S>assistant\n"]})"},
    {"chat message name is accepted", kChat, R"({"messages":[{"role":"user","content":"hi","name":"al"}]})",
     R"({"prompt_texts":["<S>user\nhi<E>\n<S>assistant\n"]})"},

    // --- fields that ask for nothing this server does not do (docs/api.md's table) ---
    {"no-op values of the refused fields", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"n":2,"best_of":2,"tools":[],"tool_choice":"none",)"
     R"("parallel_tool_calls":true,"response_format":{"type":"text"},"store":false,"service_tier":"auto",)"
     R"("metadata":{"k":"v"},"safety_identifier":"s","prompt_cache_key":"c"})",
     R"({"n":2})"},
    {"empty suffix and best_of = n", kCmpl, R"({"prompt":"a","suffix":"","best_of":1})", R"({"n":1})"},

    // --- each range at its boundary ---
    {"max_tokens 1", kCmpl, R"({"prompt":"a","max_tokens":1})", R"({"max_tokens":1})"},
    {"max_tokens 32 (the limit)", kCmpl, R"({"prompt":"a","max_tokens":32})", R"({"max_tokens":32})"},
    {"prompt + max_tokens fill the context exactly", kCmpl, R"({"prompt":"${40*a}","max_tokens":24})",
     R"({"max_tokens":24})"},
    {"max_completion_tokens wins over max_tokens", kCmpl,
     R"({"prompt":"a","max_completion_tokens":5,"max_tokens":1000})", R"({"max_tokens":5})"},
    {"n 1", kCmpl, R"({"prompt":"a","n":1})", R"({"n":1})"},
    {"n 4 (the limit)", kCmpl, R"({"prompt":"a","n":4})", R"({"n":4})"},
    {"temperature 0", kCmpl, R"({"prompt":"a","temperature":0})", R"({"temperature":0})"},
    {"temperature 2", kCmpl, R"({"prompt":"a","temperature":2})", R"({"temperature":2})"},
    {"top_p 1", kCmpl, R"({"prompt":"a","top_p":1})", R"({"top_p":1})"},
    {"top_p just above 0", kCmpl, R"({"prompt":"a","top_p":1e-6})", R"({"top_p":1e-6})"},
    {"top_k -1", kCmpl, R"({"prompt":"a","top_k":-1})", R"({"top_k":-1})"},
    {"top_k 0", kCmpl, R"({"prompt":"a","top_k":0})", R"({"top_k":0})"},
    {"top_k INT32_MAX", kCmpl, R"({"prompt":"a","top_k":2147483647})", R"({"top_k":2147483647})"},
    {"presence_penalty -2", kCmpl, R"({"prompt":"a","presence_penalty":-2})", R"({"presence_penalty":-2})"},
    {"presence_penalty 2", kCmpl, R"({"prompt":"a","presence_penalty":2.0})", R"({"presence_penalty":2})"},
    // --- vLLM's sampling fields, and logit_bias ---
    {"new sampling fields default off", kCmpl, R"({"prompt":"a"})",
     R"({"min_p":0,"repetition_penalty":1,"min_tokens":0,"logit_bias":[],"stop_token_ids":[]})"},
    {"min_p 0 and 1", kCmpl, R"({"prompt":"a","min_p":1})", R"({"min_p":1})"},
    {"min_p 0.05", kChat, R"({"messages":[{"role":"user","content":"hi"}],"min_p":0.05})", R"({"min_p":0.05})"},
    {"repetition_penalty 2", kCmpl, R"({"prompt":"a","repetition_penalty":2})", R"({"repetition_penalty":2})"},
    {"repetition_penalty below 1", kChat, R"({"messages":[{"role":"user","content":"hi"}],"repetition_penalty":0.5})",
     R"({"repetition_penalty":0.5})"},
    {"min_tokens up to max_tokens", kCmpl, R"({"prompt":"a","max_tokens":7,"min_tokens":7})",
     R"({"min_tokens":7,"max_tokens":7})"},
    {"min_tokens with the default max_tokens", kChat, R"({"messages":[{"role":"user","content":"hi"}],"min_tokens":3})",
     R"({"min_tokens":3})"},
    {"logit_bias", kCmpl, R"({"prompt":"a","logit_bias":{"257":-100,"0":100,"98":2.5}})",
     R"({"logit_bias":[[0,100],[257,-100],[98,2.5]]})"},
    {"logit_bias in chat", kChat, R"({"messages":[{"role":"user","content":"hi"}],"logit_bias":{"5":-1}})",
     R"({"logit_bias":[[5,-1]]})"},
    {"empty logit_bias", kCmpl, R"({"prompt":"a","logit_bias":{}})", R"({"logit_bias":[]})"},
    {"stop_token_ids", kCmpl, R"({"prompt":"a","stop_token_ids":[10,257]})", R"({"stop_token_ids":[10,257]})"},
    {"stop_token_ids with ignore_eos", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"stop_token_ids":[33],"ignore_eos":true})",
     R"({"stop_token_ids":[33],"ignore_eos":true})"},
    {"frequency_penalty -2", kCmpl, R"({"prompt":"a","frequency_penalty":-2})", R"({"frequency_penalty":-2})"},
    {"frequency_penalty 2", kCmpl, R"({"prompt":"a","frequency_penalty":2})", R"({"frequency_penalty":2})"},
    {"seed 0", kCmpl, R"({"prompt":"a","seed":0})", R"({"seed":0})"},
    {"seed -1 wraps to uint64 max", kCmpl, R"({"prompt":"a","seed":-1})", R"({"seed":18446744073709551615})"},
    {"seed uint64 max", kCmpl, R"({"prompt":"a","seed":18446744073709551615})", R"({"seed":18446744073709551615})"},
    {"completions logprobs true", kCmpl, R"({"prompt":"a","logprobs":true})", R"({"logprobs":true,"n_logprobs":0})"},
    {"completions logprobs false", kCmpl, R"({"prompt":"a","logprobs":false})", R"({"logprobs":false,"n_logprobs":0})"},
    {"completions logprobs 0", kCmpl, R"({"prompt":"a","logprobs":0})", R"({"logprobs":true,"n_logprobs":0})"},
    {"completions logprobs 20 (the limit)", kCmpl, R"({"prompt":"a","logprobs":20})",
     R"({"logprobs":true,"n_logprobs":20})"},
    {"chat top_logprobs 20 (the limit)", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":20})",
     R"({"logprobs":true,"n_logprobs":20})"},
    {"chat top_logprobs 0 without logprobs", kChat, R"({"messages":[{"role":"user","content":"hi"}],"top_logprobs":0})",
     R"({"logprobs":false,"n_logprobs":0})"},
    {"stop as a string", kCmpl, R"({"prompt":"a","stop":"\n\n"})", R"({"stop":["\n\n"]})"},
    {"stop as a list", kCmpl, R"({"prompt":"a","stop":["a","b"]})", R"({"stop":["a","b"]})"},
    {"stop as an empty list", kCmpl, R"({"prompt":"a","stop":[]})", R"({"stop":[]})"},
    {"16 stop strings (the limit)", kCmpl, R"({"prompt":"a","stop":[${16,"s"}]})", R"({"stop":[${16,"s"}]})"},
    {"stop string of 256 bytes (the limit)", kCmpl, R"({"prompt":"a","stop":"${256*s}"})",
     R"({"stop":["${256*s}"]
})"},
    {"stream_options without include_usage", kCmpl, R"({"prompt":"a","stream":true,"stream_options":{}})",
     R"({"stream":true,"include_usage":false})"},
    {"nested 64 levels deep (the limit)", kCmpl, R"({"prompt":"a","metadata":{"k":${62*[}${62*]}}})",
     R"({"prompt_texts":["a"]})"},
};

TEST(OpenAiRequest, AcceptedBodiesGiveTheseFields) {
  for (const Accepted& c : kAccepted) {
    const std::string body = expand(c.body);
    SCOPED_TRACE(std::string(c.name) + ": " + body.substr(0, 200));
    try {
      expect_fields(parse(c.route, body, c.tok), json::parse(expand(c.want)));
    } catch (const ApiError& e) {
      ADD_FAILURE() << "refused with " << status_of(e.kind()) << " param '" << e.param() << "': " << e.what();
    }
  }
}

// --- refused bodies ------------------------------------------------------------------------------------------

const Rejected kRejected[] = {
    // --- the body itself ---
    {"empty body", kCmpl, "", 400, "", "the request body is empty"},
    {"malformed JSON", kCmpl, R"({"prompt":"a")", 400, "", "malformed JSON"},
    {"trailing garbage", kCmpl, R"({"prompt":"a"} x)", 400, "", "malformed JSON"},
    {"a number past double's range", kCmpl, R"({"prompt":"a","temperature":1e400})", 400, "", "malformed JSON"},
    {"a lone surrogate", kCmpl, R"({"prompt":"\ud800"})", 400, "", "malformed JSON"},
    {"body is an array", kCmpl, R"([{"prompt":"a"}])", 400, "", "must be a JSON object"},
    {"body is a string", kChat, R"("hi")", 400, "", "must be a JSON object"},
    {"nested 65 levels deep", kCmpl, R"({"prompt":"a","x":${64*[}${64*]}})", 400, "", "nested deeper than 64 levels"},
    {"nested 100000 levels deep", kChat, R"({"prompt":"a","x":${99999*[}${99999*]}})", 400, "",
     "nested deeper than 64 levels"},
    {"model is not the served one", kCmpl, R"({"prompt":"a","model":"gpt-4"})", 404, "model",
     "The model \"gpt-4\" does not exist; this server serves 'm'"},
    {"model is not a string", kChat, R"({"messages":[{"role":"user","content":"hi"}],"model":5})", 400, "model",
     "must be a string"},

    // --- the prompt ---
    {"prompt missing", kCmpl, R"({"max_tokens":3})", 400, "prompt", "is required"},
    {"prompt null", kCmpl, R"({"prompt":null})", 400, "prompt", "is required"},
    {"prompt empty string", kCmpl, R"({"prompt":""})", 400, "prompt", "is empty (0 tokens)"},
    {"prompt empty list", kCmpl, R"({"prompt":[]})", 400, "prompt", "must be a string, a list of strings"},
    {"prompt number", kCmpl, R"({"prompt":5})", 400, "prompt", "must be a string, a list of strings"},
    {"prompt object", kCmpl, R"({"prompt":{"text":"a"}})", 400, "prompt", "must be a string, a list of strings"},
    {"prompt list with a boolean", kCmpl, R"({"prompt":[true]})", 400, "prompt[0]",
     "must be a string or a list of token ids"},
    {"prompt list with an empty string", kCmpl, R"({"prompt":["a",""]})", 400, "prompt[1]", "is empty (0 tokens)"},
    {"prompt list with an empty id list", kCmpl, R"({"prompt":[[1],[]]})", 400, "prompt[1]", "is empty (0 tokens)"},
    {"prompt token id not an integer", kCmpl, R"({"prompt":[1,2.5]})", 400, "prompt",
     "token ids must be integers, got 2.5"},
    {"prompt token id a string", kCmpl, R"({"prompt":[[1,"a"]]})", 400, "prompt[0]",
     "token ids must be integers, got \"a\""},
    {"prompt token id past the vocabulary", kCmpl, R"({"prompt":[258]})", 400, "prompt",
     "token id 258 is outside the vocabulary [0, 258)"},
    {"prompt token id negative", kCmpl, R"({"prompt":[[0],[-1]]})", 400, "prompt[1]",
     "token id -1 is outside the vocabulary"},
    {"prompt token id past int64", kCmpl, R"({"prompt":[18446744073709551615]})", 400, "prompt",
     "outside the vocabulary"},
    {"65 prompts", kCmpl, R"({"prompt":[${65,[1]}]})", 400, "prompt", "at most 64 prompts"},
    {"prompt of 49 tokens", kCmpl, R"({"prompt":"${49*a}"})", 400, "prompt",
     "a prompt may have at most 48 tokens; your prompt has 49 tokens"},
    {"second prompt of 49 tokens", kCmpl, R"({"prompt":["a","${49*a}"]})", 400, "prompt[1]",
     "your prompt has 49 tokens"},
    {"text prompt without a tokenizer", kCmpl, R"({"prompt":"abc"})", 400, "prompt",
     "this model has no tokenizer: send token ids", Tok::kNone},

    // --- chat messages ---
    {"messages missing", kChat, R"({"max_tokens":3})", 400, "messages", "is required"},
    {"messages empty", kChat, R"({"messages":[]})", 400, "messages", "must be a non-empty array"},
    {"messages a string", kChat, R"({"messages":"hi"})", 400, "messages", "must be a non-empty array"},
    {"message not an object", kChat, R"({"messages":["hi"]})", 400, "messages[0]", "must be an object"},
    {"role missing", kChat, R"({"messages":[{"content":"hi"}]})", 400, "messages[0].role", "is required"},
    {"role not a string", kChat, R"({"messages":[{"role":1,"content":"hi"}]})", 400, "messages[0].role",
     "must be a string"},
    {"role tool", kChat, R"({"messages":[{"role":"user","content":"a"},{"role":"tool","content":"b"}]})", 400,
     "messages[1].role", "'tool' messages need tool calling, which is not supported"},
    {"role function", kChat, R"({"messages":[{"role":"function","content":"b"}]})", 400, "messages[0].role",
     "'function' messages need tool calling"},
    {"a message with tool_calls", kChat, R"({"messages":[{"role":"assistant","content":"","tool_calls":[{}]}]})", 400,
     "messages[0].tool_calls", "tool calling is not supported"},
    {"an unknown message field", kChat, R"({"messages":[{"role":"user","content":"a","mood":"x"}]})", 400,
     "messages[0].mood", "is not a message field"},
    {"role unknown", kChat, R"({"messages":[{"role":"wizard","content":"hi"}]})", 400, "messages[0].role",
     "got \"wizard\""},
    {"content missing", kChat, R"({"messages":[{"role":"user","content":"a"},{"role":"assistant"}]})", 400,
     "messages[1].content", "is required"},
    {"content null", kChat, R"({"messages":[{"role":"user","content":null}]})", 400, "messages[0].content",
     "is required"},
    {"content a number", kChat, R"({"messages":[{"role":"user","content":5}]})", 400, "messages[0].content",
     "must be a string or a list of text parts"},
    {"content an image part", kChat,
     R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}}]}]})",
     400, "messages[0].content[1]", "a \"image_url\" part: this model reads text only"},
    {"content an audio part", kChat,
     R"({"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]})", 400,
     "messages[0].content[0]", "a \"input_audio\" part"},
    {"content a text part without a string", kChat,
     R"({"messages":[{"role":"user","content":[{"type":"text","text":5}]}]})", 400, "messages[0].content[0]",
     "only text parts"},
    {"chat prompt over the prompt limit", kChat, R"({"messages":[{"role":"user","content":"${40*a}"}]
})",
     400, "messages", "your prompt has 59 tokens"},
    {"chat without a tokenizer", kChat, R"({"messages":[{"role":"user","content":"hi"}]})", 400, "messages",
     "this model has no tokenizer", Tok::kNone},
    {"chat with a tokenizer without a template", kChat, R"({"messages":[{"role":"user","content":"hi"}]})", 400,
     "messages", "the model has no chat template", Tok::kNoTemplate},

    // --- lengths ---
    {"max_tokens 0", kCmpl, R"({"prompt":"a","max_tokens":0})", 400, "max_tokens", "must be in [1, 32], got 0"},
    {"max_tokens 33", kCmpl, R"({"prompt":"a","max_tokens":33})", 400, "max_tokens", "must be in [1, 32], got 33"},
    {"max_tokens negative", kChat, R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":-5})", 400,
     "max_tokens", "got -5"},
    {"max_tokens a float", kCmpl, R"({"prompt":"a","max_tokens":1.5})", 400, "max_tokens",
     "must be an integer, got 1.5"},
    {"max_tokens a string", kCmpl, R"({"prompt":"a","max_tokens":"5"})", 400, "max_tokens",
     "must be an integer, got \"5\""},
    {"max_tokens past int64", kCmpl, R"({"prompt":"a","max_tokens":18446744073709551615})", 400, "max_tokens",
     "must be in [1, 32]"},
    {"max_completion_tokens 0", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":0,"max_tokens":3})", 400,
     "max_completion_tokens", "must be in [1, 32], got 0"},
    {"prompt + max_tokens one past the context", kCmpl, R"({"prompt":"${40*a}","max_tokens":25})", 400, "max_tokens",
     "you requested 65 tokens (40 in the prompt, 25 in the completion)"},

    // --- sampling ---
    {"n 0", kCmpl, R"({"prompt":"a","n":0})", 400, "n", "must be in [1, 4], got 0"},
    {"n 5", kChat, R"({"messages":[{"role":"user","content":"hi"}],"n":5})", 400, "n", "must be in [1, 4], got 5"},
    {"n a string", kCmpl, R"({"prompt":"a","n":"2"})", 400, "n", "must be an integer"},
    {"temperature past 2", kCmpl, R"({"prompt":"a","temperature":2.0001})", 400, "temperature",
     "must be in [0.0, 2.0], got 2.0001"},
    {"temperature negative", kChat, R"({"messages":[{"role":"user","content":"hi"}],"temperature":-0.1})", 400,
     "temperature", "must be in [0.0, 2.0], got -0.1"},
    {"temperature a string", kCmpl, R"({"prompt":"a","temperature":"hot"})", 400, "temperature",
     "must be a number, got \"hot\""},
    {"temperature a boolean", kCmpl, R"({"prompt":"a","temperature":true})", 400, "temperature",
     "must be a number, got true"},
    {"top_p 0", kCmpl, R"({"prompt":"a","top_p":0})", 400, "top_p", "must be in (0, 1], got 0"},
    {"top_p past 1", kCmpl, R"({"prompt":"a","top_p":1.01})", 400, "top_p", "must be in [0.0, 1.0], got 1.01"},
    {"top_p negative", kCmpl, R"({"prompt":"a","top_p":-0.5})", 400, "top_p", "got -0.5"},
    {"top_k -2", kCmpl, R"({"prompt":"a","top_k":-2})", 400, "top_k", "must be in [-1, 2147483647], got -2"},
    {"top_k past INT32_MAX", kCmpl, R"({"prompt":"a","top_k":2147483648})", 400, "top_k", "got 2147483648"},
    {"top_k a float", kCmpl, R"({"prompt":"a","top_k":4.0})", 400, "top_k", "must be an integer"},
    {"presence_penalty past 2", kCmpl, R"({"prompt":"a","presence_penalty":2.5})", 400, "presence_penalty",
     "must be in [-2.0, 2.0], got 2.5"},
    {"presence_penalty below -2", kChat, R"({"messages":[{"role":"user","content":"hi"}],"presence_penalty":-2.01})",
     400, "presence_penalty", "got -2.01"},
    {"frequency_penalty past 2", kCmpl, R"({"prompt":"a","frequency_penalty":3})", 400, "frequency_penalty",
     "must be in [-2.0, 2.0], got 3"},
    {"frequency_penalty a list", kCmpl, R"({"prompt":"a","frequency_penalty":[1]})", 400, "frequency_penalty",
     "must be a number, got an array of 1 elements"},
    {"min_p past 1", kCmpl, R"({"prompt":"a","min_p":1.5})", 400, "min_p", "must be in [0.0, 1.0], got 1.5"},
    {"min_p negative", kChat, R"({"messages":[{"role":"user","content":"hi"}],"min_p":-0.1})", 400, "min_p",
     "got -0.1"},
    {"min_p a string", kCmpl, R"({"prompt":"a","min_p":"0.1"})", 400, "min_p", "must be a number"},
    {"repetition_penalty 0", kCmpl, R"({"prompt":"a","repetition_penalty":0})", 400, "repetition_penalty",
     "must be in (0, 2], got 0"},
    {"repetition_penalty past 2", kChat, R"({"messages":[{"role":"user","content":"hi"}],"repetition_penalty":2.5})",
     400, "repetition_penalty", "got 2.5"},
    {"min_tokens negative", kCmpl, R"({"prompt":"a","min_tokens":-1})", 400, "min_tokens", "got -1"},
    {"min_tokens past max_tokens", kCmpl, R"({"prompt":"a","max_tokens":5,"min_tokens":6})", 400, "min_tokens",
     "must be in [0, 5], got 6"},
    {"min_tokens a float", kChat, R"({"messages":[{"role":"user","content":"hi"}],"min_tokens":1.5})", 400,
     "min_tokens", "must be an integer"},
    {"logit_bias a list", kCmpl, R"({"prompt":"a","logit_bias":[1,2]})", 400, "logit_bias", "must be an object"},
    {"logit_bias token outside the vocabulary", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"logit_bias":{"258":1}})", 400, "logit_bias",
     "key \"258\" is not a token id in the vocabulary [0, 258)"},
    {"logit_bias key not a number", kCmpl, R"({"prompt":"a","logit_bias":{"x1":1}})", 400, "logit_bias",
     "is not a token id"},
    {"logit_bias key negative", kCmpl, R"({"prompt":"a","logit_bias":{"-1":1}})", 400, "logit_bias",
     "is not a token id"},
    {"logit_bias past 100", kCmpl, R"({"prompt":"a","logit_bias":{"1":100.5}})", 400, "logit_bias",
     "the bias of token 1 must be a number in [-100, 100], got 100.5"},
    {"logit_bias a string bias", kChat, R"({"messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":"5"}})", 400,
     "logit_bias", "must be a number in [-100, 100]"},
    {"stop_token_ids a number", kCmpl, R"({"prompt":"a","stop_token_ids":5})", 400, "stop_token_ids",
     "must be a list of token ids"},
    {"stop_token_ids outside the vocabulary", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"stop_token_ids":[1,258]})", 400, "stop_token_ids",
     "token id 258 is outside the vocabulary"},
    {"65 stop_token_ids", kCmpl, R"({"prompt":"a","stop_token_ids":[${65,1}]})", 400, "stop_token_ids",
     "at most 64 ids"},
    {"seed a float", kCmpl, R"({"prompt":"a","seed":1.5})", 400, "seed", "must be an integer, got 1.5"},
    {"seed a string", kChat, R"({"messages":[{"role":"user","content":"hi"}],"seed":"42"})", 400, "seed",
     "must be an integer, got \"42\""},
    {"completions logprobs 21", kCmpl, R"({"prompt":"a","logprobs":21})", 400, "logprobs",
     "must be in [0, 20], got 21"},
    {"completions logprobs -1", kCmpl, R"({"prompt":"a","logprobs":-1})", 400, "logprobs", "got -1"},
    {"completions logprobs a string", kCmpl, R"({"prompt":"a","logprobs":"5"})", 400, "logprobs", "must be an integer"},
    {"chat logprobs an integer", kChat, R"({"messages":[{"role":"user","content":"hi"}],"logprobs":5})", 400,
     "logprobs", "must be a boolean, got 5"},
    {"chat top_logprobs 21", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21})", 400, "top_logprobs",
     "must be in [0, 20], got 21"},
    {"chat top_logprobs without logprobs", kChat, R"({"messages":[{"role":"user","content":"hi"}],"top_logprobs":3})",
     400, "top_logprobs", "needs 'logprobs': true"},

    // --- output ---
    {"stop a number", kCmpl, R"({"prompt":"a","stop":5})", 400, "stop", "must be a string or a list of strings"},
    {"stop list with a number", kChat, R"({"messages":[{"role":"user","content":"hi"}],"stop":["a",1]})", 400, "stop",
     "must be a string or a list of strings"},
    {"stop empty string", kCmpl, R"({"prompt":"a","stop":""})", 400, "stop", "must not be empty"},
    {"17 stop strings", kCmpl, R"({"prompt":"a","stop":[${17,"s"}]})", 400, "stop", "at most 16 stop strings"},
    {"stop string of 257 bytes", kCmpl, R"({"prompt":"a","stop":"${257*s}"})", 400, "stop", "at most 256 bytes"},
    {"stop without a tokenizer", kCmpl, R"({"prompt":[1],"stop":"x"})", 400, "stop",
     "no tokenizer, so stop strings cannot be matched", Tok::kNone},
    {"echo a string", kCmpl, R"({"prompt":"a","echo":"yes"})", 400, "echo", "must be a boolean, got \"yes\""},
    {"stream a number", kCmpl, R"({"prompt":"a","stream":1})", 400, "stream", "must be a boolean, got 1"},
    {"ignore_eos a string", kChat, R"({"messages":[{"role":"user","content":"hi"}],"ignore_eos":"true"})", 400,
     "ignore_eos", "must be a boolean"},
    {"return_token_ids a number", kCmpl, R"({"prompt":"a","return_token_ids":0})", 400, "return_token_ids",
     "must be a boolean"},
    {"stream_options a boolean", kCmpl, R"({"prompt":"a","stream_options":true})", 400, "stream_options",
     "must be an object"},
    {"include_usage a string", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":"yes"}})", 400, "include_usage",
     "must be a boolean"},
    {"user a number", kCmpl, R"({"prompt":"a","user":5})", 400, "user", "must be a string"},

    // --- fields refused by name: unknown, or asking for what this server does not do ---
    {"an unknown field", kCmpl, R"({"prompt":"a","frobnicate":1})", 400, "frobnicate",
     "Unrecognized request argument supplied: \"frobnicate\""},
    {"an unknown vLLM field", kChat, R"({"messages":[{"role":"user","content":"hi"}],"use_beam_search":true})", 400,
     "use_beam_search", "Unrecognized request argument"},
    {"echo on chat", kChat, R"({"messages":[{"role":"user","content":"hi"}],"echo":true})", 400, "echo",
     "a chat completion field"},
    {"top_logprobs on completions", kCmpl, R"({"prompt":"a","top_logprobs":2})", 400, "top_logprobs",
     "a completion field"},
    {"tools", kChat, R"({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]})", 400, "tools",
     "tool calling is not supported"},
    {"tool_choice auto", kChat, R"({"messages":[{"role":"user","content":"hi"}],"tool_choice":"auto"})", 400,
     "tool_choice", "only 'none'"},
    {"functions", kChat, R"({"messages":[{"role":"user","content":"hi"}],"functions":[{}]})", 400, "functions",
     "Unrecognized request argument"},
    {"response_format json_object", kChat,
     R"({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}})", 400,
     "response_format", "structured output"},
    {"response_format a string", kChat, R"({"messages":[{"role":"user","content":"hi"}],"response_format":"json"})",
     400, "response_format", "structured output"},
    {"best_of 2 with n 1", kCmpl, R"({"prompt":"a","best_of":2})", 400, "best_of", "only best_of = n (1)"},
    {"best_of a string", kCmpl, R"({"prompt":"a","n":2,"best_of":"2"})", 400, "best_of", "only best_of = n (2)"},
    {"suffix", kCmpl, R"({"prompt":"a","suffix":"}"})", 400, "suffix", "insertion"},
    {"store true", kChat, R"({"messages":[{"role":"user","content":"hi"}],"store":true})", 400, "store", "only false"},
    {"service_tier flex", kCmpl, R"({"prompt":"a","service_tier":"flex"})", 400, "service_tier", "one tier"},
    {"metadata a list", kCmpl, R"({"prompt":"a","metadata":[1]})", 400, "metadata", "must be an object"},
    {"audio output", kChat, R"({"messages":[{"role":"user","content":"hi"}],"audio":{"voice":"x"}})", 400, "audio",
     "Unrecognized request argument"},
};

TEST(OpenAiRequest, RefusedBodiesGiveThisStatusParamAndMessage) {
  for (const Rejected& c : kRejected) {
    const std::string body = expand(c.body);
    SCOPED_TRACE(std::string(c.name) + ": " + body.substr(0, 200));
    try {
      parse(c.route, body, c.tok);
      ADD_FAILURE() << "accepted";
    } catch (const ApiError& e) {
      EXPECT_EQ(status_of(e.kind()), c.status) << e.what();
      EXPECT_EQ(e.param(), c.param) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << e.what();
      // The body a client gets names the same field (null when none).
      const json error = json::parse(error_body(e));
      EXPECT_EQ(error["error"]["param"], *c.param ? json(c.param) : json(nullptr));
      EXPECT_EQ(error["error"]["message"], e.what());
    }
  }
}

TEST(OpenAiRequest, EveryRangeLimitIsARefusalOnePastIt) {
  // The table pairs: each bounded field has an accepted row at its limit and a refused row past it.
  std::set<std::string> refused_params;
  for (const Rejected& c : kRejected) refused_params.insert(c.param);
  for (const char* field : {"max_tokens",
                            "max_completion_tokens",
                            "n",
                            "temperature",
                            "top_p",
                            "top_k",
                            "presence_penalty",
                            "frequency_penalty",
                            "logprobs",
                            "top_logprobs",
                            "seed",
                            "stop",
                            "prompt",
                            "messages",
                            "model",
                            "min_p",
                            "repetition_penalty",
                            "min_tokens",
                            "logit_bias",
                            "stop_token_ids"})
    EXPECT_TRUE(refused_params.count(field)) << field << " has no refused row";
}

// OpenAI's limit of 300 logit_bias entries (distinct keys, which a table row cannot spell short).
TEST(OpenAiRequest, LogitBiasTakes300EntriesAndRefuses301) {
  ApiLimits big = limits();
  big.vocab = 1000;  // more ids than the test vocabulary has
  json body = {{"prompt", "a"}, {"logit_bias", json::object()}};
  for (int i = 0; i < 300; ++i) body["logit_bias"][std::to_string(i)] = i % 2 == 0 ? -1.0 : 0.5;
  EXPECT_EQ(parse_completion(body, false, big, &chat_tokenizer()).logit_bias.size(), 300u);
  body["logit_bias"]["300"] = 2;
  try {
    (void)parse_completion(body, false, big, &chat_tokenizer());
    ADD_FAILURE() << "301 entries accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "logit_bias");
    EXPECT_NE(std::string(e.what()).find("at most 300 entries, got 301"), std::string::npos) << e.what();
  }
}

TEST(OpenAiRequest, WithoutASeedEachRequestDrawsItsOwn) {
  const uint64_t a = parse(kCmpl, R"({"prompt":"a"})", Tok::kChat).sampling.seed;
  const uint64_t b = parse(kCmpl, R"({"prompt":"a"})", Tok::kChat).sampling.seed;
  EXPECT_NE(a, b);
}

TEST(OpenAiRequest, DescribeValueIsBounded) {
  EXPECT_EQ(describe_value(json("short")), "\"short\"");
  EXPECT_EQ(describe_value(json(std::string(100, 'x'))), "\"" + std::string(64, 'x') + "\" (100 bytes)");
  EXPECT_EQ(describe_value(json::array({1, 2, 3})), "an array of 3 elements");
  EXPECT_EQ(describe_value(json{{"a", 1}}), "an object with 1 keys");
  EXPECT_EQ(describe_value(json(nullptr)), "null");
  EXPECT_EQ(describe_value(json(-7)), "-7");
}

// --- errors.h: each kind's status, OpenAI type and code, and extra headers ----------------------------------------

struct KindRow {
  ErrorKind kind;
  int status;
  const char* type;
  const char* code;
};

TEST(ApiErrors, EachKindHasItsStatusTypeAndCode) {
  const KindRow rows[] = {
      {ErrorKind::kInvalid, 400, "invalid_request_error", "invalid_request"},
      {ErrorKind::kUnauthorized, 401, "authentication_error", "invalid_api_key"},
      {ErrorKind::kNotFound, 404, "not_found_error", "not_found"},
      {ErrorKind::kModelNotFound, 404, "invalid_request_error", "model_not_found"},
      {ErrorKind::kMethodNotAllowed, 405, "invalid_request_error", "method_not_allowed"},
      {ErrorKind::kTimeout, 408, "invalid_request_error", "request_timeout"},
      {ErrorKind::kTooLarge, 413, "invalid_request_error", "request_too_large"},
      {ErrorKind::kUnsupportedMedia, 415, "invalid_request_error", "unsupported_media_type"},
      {ErrorKind::kHeaderTooLarge, 431, "invalid_request_error", "header_too_large"},
      {ErrorKind::kNotImplemented, 501, "invalid_request_error", "not_implemented"},
      {ErrorKind::kHttpVersion, 505, "invalid_request_error", "http_version_not_supported"},
      {ErrorKind::kQueueFull, 429, "rate_limit_error", "queue_full"},
      {ErrorKind::kUnavailable, 503, "service_unavailable_error", "service_unavailable"},
      {ErrorKind::kInternal, 500, "server_error", "internal_error"},
  };
  for (const KindRow& row : rows) {
    SCOPED_TRACE(row.code);
    EXPECT_EQ(status_of(row.kind), row.status);
    const http::HttpResponse r = to_response(ApiError(row.kind, "what happened", "field"), 7);
    EXPECT_EQ(r.status, row.status);
    EXPECT_EQ(r.content_type, "application/json");
    const json body = json::parse(r.body);
    EXPECT_EQ(
        body,
        (json{{"error", {{"message", "what happened"}, {"type", row.type}, {"param", "field"}, {"code", row.code}}}}));
    // Retry-After (the value given) on 429 and 503 only; WWW-Authenticate on 401 only.
    http::Headers want;
    if (row.status == 429 || row.status == 503) want.emplace_back("Retry-After", "7");
    if (row.status == 401) want.emplace_back("WWW-Authenticate", "Bearer");
    EXPECT_EQ(r.headers, want);
  }
}

TEST(ApiErrors, BodyHasNullParamWhenNoFieldAndStaysJsonForBadBytes) {
  const json body = json::parse(error_body(ApiError(ErrorKind::kInvalid, "bad \xff byte")));
  EXPECT_TRUE(body["error"]["param"].is_null());
  EXPECT_EQ(body["error"]["message"], "bad \xEF\xBF\xBD byte");  // U+FFFD
}

TEST(ApiErrors, FramingStatusesBecomeTheirKinds) {
  const std::pair<int, ErrorKind> rows[] = {
      {400, ErrorKind::kInvalid},          {408, ErrorKind::kTimeout},        {413, ErrorKind::kTooLarge},
      {415, ErrorKind::kUnsupportedMedia}, {431, ErrorKind::kHeaderTooLarge}, {501, ErrorKind::kNotImplemented},
      {505, ErrorKind::kHttpVersion},      {418, ErrorKind::kInvalid},  // an unknown framing status is a 400
  };
  for (const auto& [status, kind] : rows) {
    SCOPED_TRACE(status);
    const ApiError e = from_framing_status(status, "framing says why");
    EXPECT_EQ(e.kind(), kind);
    EXPECT_EQ(status_of(e.kind()), status == 418 ? 400 : status);
    EXPECT_STREQ(e.what(), "framing says why");
    EXPECT_EQ(e.param(), "");
  }
}

TEST(ApiErrors, SubmitStatusesBecomeTheirKinds) {
  struct Row {
    SubmitStatus status;
    std::string why;
    int http;
    std::string message;
  };
  const Row rows[] = {
      {SubmitStatus::kQueueFull, "", 429, "the waiting queue is full, retry later"},
      {SubmitStatus::kQueueFull, "256 waiting", 429, "256 waiting"},
      {SubmitStatus::kDraining, "", 503, "the server is shutting down"},
      {SubmitStatus::kInvalid, "", 400, "the scheduler refused the request"},
      {SubmitStatus::kInvalid, "n_logprobs must be in [0, 20], got 21", 400, "n_logprobs must be in [0, 20], got 21"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.message);
    const ApiError e = from_submit_status(row.status, row.why);
    EXPECT_EQ(status_of(e.kind()), row.http);
    EXPECT_EQ(e.what(), row.message);
  }
}

TEST(ApiErrorsDeathTest, AcceptedIsNotAnError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(from_submit_status(SubmitStatus::kAccepted, ""), "from_submit_status\\(kAccepted\\)");
}

// --- Api::handle: routes, authentication and the scheduler's refusals → what the client gets ---------------------

class RecordingExchange final : public http::Exchange {
 public:
  void respond(http::HttpResponse r) override {
    ++responses;
    response = std::move(r);
  }
  void start_stream(int status, std::string, http::Headers) override { stream_status = status; }
  void write(std::string chunk) override { chunks.push_back(std::move(chunk)); }
  void end() override { ended = true; }
  void on_disconnect(std::function<void()>) override {}
  bool disconnected() const override { return false; }

  int responses = 0, stream_status = 0;
  bool ended = false;
  http::HttpResponse response;
  std::vector<std::string> chunks;
};

std::string header(const http::HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

enum class Submit { kAccept, kQueueFull, kDraining, kInvalid, kThrow };

struct RouteRow {
  const char* name;
  const char *method, *path, *authorization, *body;
  int error_status;  // a request the HTTP layer could not read
  Submit submit;
  bool drain;  // begin_drain() first
  int status;
  const char* code;                                  // error.code; "" for a success
  const char *header_name = "", *header_value = "";  // one header the answer must carry
};

TEST(ApiRoutes, EachRequestGetsItsStatus) {
  const char *kKey = "Bearer sk-test", *kBody = R"({"prompt":"a","max_tokens":2})";
  const RouteRow rows[] = {
      {"unknown route", "GET", "/v1/nope", kKey, "", 0, Submit::kAccept, false, 404, "not_found"},
      {"GET on a POST route", "GET", "/v1/completions", kKey, "", 0, Submit::kAccept, false, 405, "method_not_allowed",
       "Allow", "POST"},
      {"POST on a GET route", "POST", "/v1/models", kKey, "", 0, Submit::kAccept, false, 405, "method_not_allowed",
       "Allow", "GET"},
      {"no API key", "POST", "/v1/completions", "", kBody, 0, Submit::kAccept, false, 401, "invalid_api_key",
       "WWW-Authenticate", "Bearer"},
      {"wrong API key", "POST", "/v1/chat/completions", "Bearer sk-other", kBody, 0, Submit::kAccept, false, 401,
       "invalid_api_key"},
      {"not a bearer key", "POST", "/v1/completions", "Basic sk-test", kBody, 0, Submit::kAccept, false, 401,
       "invalid_api_key"},
      {"models with the key", "GET", "/v1/models", kKey, "", 0, Submit::kAccept, false, 200, ""},
      {"health is public", "GET", "/health", "", "", 0, Submit::kAccept, false, 200, ""},
      {"ready is public, and 503 before set_ready", "GET", "/ready", "", "", 0, Submit::kAccept, false, 503,
       "service_unavailable", "Retry-After", "3"},
      {"bad JSON", "POST", "/v1/completions", "bearer   sk-test", "{", 0, Submit::kAccept, false, 400,
       "invalid_request"},
      {"unknown model", "POST", "/v1/completions", kKey, R"({"prompt":"a","model":"x"})", 0, Submit::kAccept, false,
       404, "model_not_found"},
      {"queue full", "POST", "/v1/completions", kKey, kBody, 0, Submit::kQueueFull, false, 429, "queue_full",
       "Retry-After", "3"},
      {"scheduler draining", "POST", "/v1/completions", kKey, kBody, 0, Submit::kDraining, false, 503,
       "service_unavailable", "Retry-After", "3"},
      {"scheduler refuses", "POST", "/v1/completions", kKey, kBody, 0, Submit::kInvalid, false, 400, "invalid_request"},
      {"submit throws", "POST", "/v1/completions", kKey, kBody, 0, Submit::kThrow, false, 500, "internal_error"},
      {"api draining", "POST", "/v1/chat/completions", kKey, R"({"messages":[{"role":"user","content":"a"}]})", 0,
       Submit::kAccept, true, 503, "service_unavailable", "Retry-After", "3"},
      {"tokenize", "POST", "/tokenize", kKey, R"({"prompt":"ab"})", 0, Submit::kAccept, false, 200, ""},
      {"detokenize past the vocabulary", "POST", "/detokenize", kKey, R"({"tokens":[300]})", 0, Submit::kAccept, false,
       400, "invalid_request"},
      {"framing 400", "", "", "", "", 400, Submit::kAccept, false, 400, "invalid_request"},
      {"framing 408", "POST", "/v1/completions", "", "", 408, Submit::kAccept, false, 408, "request_timeout"},
      {"framing 413", "POST", "/v1/completions", "", "", 413, Submit::kAccept, false, 413, "request_too_large"},
      {"framing 415", "POST", "/v1/completions", "", "", 415, Submit::kAccept, false, 415, "unsupported_media_type"},
      {"framing 431", "", "", "", "", 431, Submit::kAccept, false, 431, "header_too_large"},
      {"framing 501", "POST", "/v1/completions", "", "", 501, Submit::kAccept, false, 501, "not_implemented"},
      {"framing 505", "GET", "/health", "", "", 505, Submit::kAccept, false, 505, "http_version_not_supported"},
  };
  for (const RouteRow& row : rows) {
    SCOPED_TRACE(row.name);
    ApiOptions options;
    options.limits = limits();
    options.api_key = "sk-test";
    options.retry_after_s = 3;
    const Submit submit = row.submit;
    Api api(
        options, &chat_tokenizer(),
        [submit](std::shared_ptr<Request>, std::string* why) {
          switch (submit) {
            case Submit::kAccept:
              return SubmitStatus::kAccepted;
            case Submit::kQueueFull:
              return SubmitStatus::kQueueFull;
            case Submit::kDraining:
              return SubmitStatus::kDraining;
            case Submit::kInvalid:
              *why = "the scheduler says no";
              return SubmitStatus::kInvalid;
            case Submit::kThrow:
              break;
          }
          throw std::runtime_error("boom");
        },
        nullptr);
    if (row.drain) api.begin_drain();
    http::HttpRequest req;
    req.method = row.method;
    req.path = row.path;
    req.authorization = row.authorization;
    req.body = row.body;
    req.error_status = row.error_status;
    req.error_message = row.error_status ? "framing says why" : "";
    auto ex = std::make_shared<RecordingExchange>();
    api.handle(req, ex);
    ASSERT_EQ(ex->responses, 1);
    EXPECT_EQ(ex->response.status, row.status) << ex->response.body;
    if (*row.code) {
      const json body = json::parse(ex->response.body);
      EXPECT_EQ(body["error"]["code"], row.code) << ex->response.body;
      if (row.error_status) {
        EXPECT_EQ(body["error"]["message"], "framing says why");
      }
    }
    if (*row.header_name) {
      EXPECT_EQ(header(ex->response, row.header_name), row.header_value);
    }
  }
}

TEST(ApiRoutes, AnAcceptedCompletionBecomesARequestAndItsAnswer) {
  ApiOptions options;
  options.limits = limits();
  std::vector<std::shared_ptr<Request>> submitted;
  Api api(
      options, &chat_tokenizer(),
      [&](std::shared_ptr<Request> r, std::string*) {
        submitted.push_back(std::move(r));
        return SubmitStatus::kAccepted;
      },
      nullptr);
  http::HttpRequest req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = R"({"prompt":["hi",[5,6]],"max_tokens":3,"n":2,"temperature":0.5,"seed":9})";
  auto ex = std::make_shared<RecordingExchange>();
  api.handle(req, ex);
  ASSERT_EQ(submitted.size(), 2u);  // one Request per prompt, n sequences each
  EXPECT_EQ(ex->responses, 0);      // nothing is answered before the tokens come
  EXPECT_EQ(submitted[0]->prompt, ids("hi"));
  EXPECT_EQ(submitted[1]->prompt, (Ids{5, 6}));
  for (const auto& r : submitted) {
    EXPECT_EQ(r->max_tokens, 3);
    EXPECT_EQ(r->n, 2);
    EXPECT_FLOAT_EQ(r->sampling.temperature, 0.5f);
    EXPECT_EQ(r->sampling.seed, 9u);
    EXPECT_EQ(r->stop_ids, (Ids{kImEnd}));  // the tokenizer's EOS, as ignore_eos is false
    EXPECT_LT(r->deadline, SteadyClock::time_point::max());
  }
  EXPECT_NE(submitted[0]->id, submitted[1]->id);
  // Every sequence finishes: the one JSON answer, choice index = prompt * n + sequence.
  for (size_t p = 0; p < submitted.size(); ++p) {
    for (int32_t seq = 0; seq < 2; ++seq) {
      submitted[p]->sink->on_token(TokenEvent{seq, 'x', 0.0f, {}});
      submitted[p]->sink->on_finish(seq, FinishReason::kLength, "");
    }
  }
  ASSERT_EQ(ex->responses, 1);
  EXPECT_EQ(ex->response.status, 200);
  const json body = json::parse(ex->response.body);
  ASSERT_EQ(body["choices"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    EXPECT_EQ(body["choices"][i]["text"], "x");
    EXPECT_EQ(body["choices"][i]["finish_reason"], "length");
  }
  EXPECT_EQ(body["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(body["usage"]["completion_tokens"], 4);
}

}  // namespace
}  // namespace tessera::coordinator::api
