// coordinator/api/openai_request.cpp — field by field validation of OpenAI request bodies.
#include "coordinator/api/openai_request.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string_view>
#include <nlohmann/json.hpp>
#include <random>

#include "common/check.h"
#include "coordinator/api/errors.h"

namespace tessera::coordinator::api {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw ApiError(ErrorKind::kInvalid, "'" + field + "': " + why, field);
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number(const json& body, const char* name, double def, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) bad(name, "must be a number, got " + describe_value(*v));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(name, "must be in [" + json(lo).dump() + ", " + json(hi).dump() + "], got " + describe_value(*v));
  return x;
}

int64_t integer(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number_integer()) bad(name, "must be an integer, got " + describe_value(*v));
  const int64_t x =
      v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v->get<int64_t>();
  if (x < lo || x > hi)
    bad(name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + describe_value(*v));
  return x;
}

bool boolean(const json& body, const char* name, bool def) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_boolean()) bad(name, "must be a boolean, got " + describe_value(*v));
  return v->get<bool>();
}

std::vector<int32_t> token_ids(const json& list, const std::string& name, const ApiLimits& limits) {
  std::vector<int32_t> ids;
  ids.reserve(list.size());
  for (const json& v : list) {
    if (!v.is_number_integer()) bad(name, "token ids must be integers, got " + describe_value(v));
    const int64_t id = v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), INT64_MAX))
                                              : v.get<int64_t>();
    if (id < 0 || id >= limits.vocab)
      bad(name,
          "token id " + describe_value(v) + " is outside the vocabulary [0, " + std::to_string(limits.vocab) + ")");
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

std::vector<int32_t> encode_text(const std::string& text, const std::string& name, const tokenizer::Tokenizer* tok,
                                 bool chat_template) {
  if (!tok) bad(name, "this model has no tokenizer: send token ids");
  try {
    return chat_template ? tok->encode(text, false, true) : tok->encode(text, true, false);
  } catch (const Error& e) {
    bad(name, e.what());  // e.g. invalid UTF-8
  }
}

// Every top-level field a completion or chat request may carry: honoured, or accepted with no effect because it
// changes nothing here (documented in docs/api.md). Anything else is refused by name (refuse_unsupported below, or
// as unrecognized): a field that is silently ignored is a wrong answer the client cannot see.
constexpr std::string_view kCommonFields[] = {
    "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "n", "seed", "presence_penalty",
    "frequency_penalty", "stop", "stream", "stream_options", "ignore_eos", "return_token_ids", "logprobs", "logit_bias",
    "min_p", "repetition_penalty", "stop_token_ids", "min_tokens",
    // accepted, no effect: who asks (OpenAI's abuse-monitoring ids), tags, a cache hint (prefix caching is automatic)
    "user", "safety_identifier", "metadata", "prompt_cache_key",
    // checked below: refused unless they ask for what is done anyway
    "best_of", "store", "service_tier"};
constexpr std::string_view kCompletionFields[] = {"prompt", "echo", "suffix"};
constexpr std::string_view kChatFields[] = {"messages",    "top_logprobs",        "tools",
                                            "tool_choice", "parallel_tool_calls", "response_format"};

bool listed(std::string_view key, bool chat) {
  const auto in = [&](const auto& list) { return std::find(std::begin(list), std::end(list), key) != std::end(list); };
  return in(kCommonFields) || (chat ? in(kChatFields) : in(kCompletionFields));
}

void refuse_unrecognized(const json& body, bool chat) {
  for (const auto& [key, value] : body.items()) {
    if (value.is_null() || listed(key, chat)) continue;
    throw ApiError(ErrorKind::kInvalid,
                   "Unrecognized request argument supplied: " + describe_value(json(key)) +
                       (chat ? " (a chat completion field: docs/api.md lists every one)"
                             : " (a completion field: docs/api.md lists every one)"),
                   key.size() <= 64 ? key : key.substr(0, 64));
  }
}

// The fields whose every value but the no-op one asks for something this server does not do.
void refuse_unsupported(const json& body, bool chat, int64_t n) {
  if (const json* v = field(body, "best_of")) {
    if (!v->is_number_integer() || v->get<int64_t>() != n)
      bad("best_of", "only best_of = n (" + std::to_string(n) + ") is supported: choices are not ranked, got " +
                         describe_value(*v));
  }
  if (const json* v = field(body, "store")) {
    if (!v->is_boolean() || v->get<bool>()) bad("store", "this server stores no completions: only false is accepted");
  }
  if (const json* v = field(body, "service_tier")) {
    if (!v->is_string() || (*v != "auto" && *v != "default"))
      bad("service_tier", "this server has one tier: 'auto' or 'default', got " + describe_value(*v));
  }
  if (const json* v = field(body, "metadata"); v && !v->is_object()) bad("metadata", "must be an object");
  if (chat) {
    if (const json* v = field(body, "tools"); v && !(v->is_array() && v->empty()))
      bad("tools", "tool calling is not supported: the model's chat template declares no tool support");
    if (const json* v = field(body, "tool_choice"); v && *v != "none")
      bad("tool_choice", "tool calling is not supported: only 'none' is accepted");
    if (const json* v = field(body, "response_format")) {
      const json* type = v->is_object() ? field(*v, "type") : nullptr;
      if (!type || *type != "text")
        bad("response_format",
            "structured output (json_object, json_schema) is not supported yet: only "
            "{\"type\": \"text\"} is accepted");
    }
  } else if (const json* v = field(body, "suffix");
             v && !(v->is_string() && v->get_ref<const std::string&>().empty())) {
    bad("suffix", "insertion (a suffix after the completion) is not supported");
  }
}

}  // namespace

json parse_request_body(std::string_view body) {
  if (body.empty()) throw ApiError(ErrorKind::kInvalid, "the request body is empty: send a JSON object");
  // nlohmann's parser keeps its own stack; the callback stops it at the first container past the limit.
  const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth)
      throw ApiError(ErrorKind::kInvalid, "the request body is nested deeper than " + std::to_string(kMaxJsonDepth) +
                                              " levels of arrays and objects");
    return true;
  };
  try {
    return json::parse(body.begin(), body.end(), limit_depth);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number past double's range (1e400)
    throw ApiError(ErrorKind::kInvalid, std::string("malformed JSON in the request body: ") + e.what());
  }
}

std::string describe_value(const json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.size() <= 64) return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    return json(s.substr(0, 64)).dump(-1, ' ', false, json::error_handler_t::replace) + " (" +
           std::to_string(s.size()) + " bytes)";
  }
  if (v.is_array()) return "an array of " + std::to_string(v.size()) + " elements";
  if (v.is_object()) return "an object with " + std::to_string(v.size()) + " keys";
  return v.dump();
}

std::vector<tokenizer::ChatMessage> parse_messages(const json& messages) {
  if (!messages.is_array() || messages.empty()) bad("messages", "must be a non-empty array of messages");
  std::vector<tokenizer::ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(where, "must be an object with 'role' and 'content'");
    for (const auto& [key, value] : m.items()) {
      if (key == "role" || key == "content" || key == "name" || value.is_null()) continue;
      bad(where + "." + (key.size() <= 64 ? key : key.substr(0, 64)),
          key == "tool_calls" || key == "tool_call_id" || key == "function_call"
              ? "tool calling is not supported: the model's chat template declares no tool support"
              : "is not a message field this server knows (role, content, name)");
    }
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad(where + ".role", "is required and must be a string");
    std::string role_name = role->get<std::string>();
    // OpenAI's "developer" is the system role of newer models; tool messages need tool support (not served).
    if (role_name == "developer") role_name = "system";
    if (role_name == "tool" || role_name == "function")
      bad(where + ".role", "'" + role_name + "' messages need tool calling, which is not supported");
    if (role_name != "system" && role_name != "user" && role_name != "assistant")
      bad(where + ".role", "must be 'system', 'developer', 'user' or 'assistant', got " + describe_value(*role));
    tokenizer::ChatMessage msg{role_name, ""};
    const json* content = field(m, "content");
    if (!content) {
      bad(where + ".content", "is required (a string or a list of text parts)");
    } else if (content->is_string()) {
      msg.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t j = 0; j < content->size(); ++j) {
        const json& part = (*content)[j];
        const std::string at = where + ".content[" + std::to_string(j) + "]";
        const json* type = part.is_object() ? field(part, "type") : nullptr;
        const json* text = part.is_object() ? field(part, "text") : nullptr;
        if (type && type->is_string() && *type != "text")
          bad(at, "a " + describe_value(*type) + " part: this model reads text only ({\"type\": \"text\", ...})");
        if (!type || !text || !text->is_string())
          bad(at, "only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
        msg.content += text->get<std::string>();
      }
    } else {
      bad(where + ".content", "must be a string or a list of text parts");
    }
    out.push_back(std::move(msg));
  }
  return out;
}

CompletionParams parse_completion(const json& body, bool chat, const ApiLimits& limits,
                                  const tokenizer::Tokenizer* tok) {
  if (!body.is_object()) throw ApiError(ErrorKind::kInvalid, "the request body must be a JSON object");
  refuse_unrecognized(body, chat);
  CompletionParams p;
  p.chat = chat;
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) bad("model", "must be a string");
    if (m->get<std::string>() != limits.model_name)
      throw ApiError(
          ErrorKind::kModelNotFound,
          "The model " + describe_value(*m) + " does not exist; this server serves '" + limits.model_name + "'",
          "model");
  }

  // --- the prompt ---
  if (chat) {
    const json* messages = field(body, "messages");
    if (!messages) bad("messages", "is required");
    auto msgs = parse_messages(*messages);
    if (!tok) bad("messages", "this model has no tokenizer (no chat template): use /v1/completions with token ids");
    std::string rendered;
    try {
      rendered = tok->apply_chat_template(msgs, true);
    } catch (const Error& e) {
      bad("messages", e.what());
    }
    p.prompts.push_back(encode_text(rendered, "messages", tok, true));
  } else {
    const json* prompt = field(body, "prompt");
    if (!prompt) bad("prompt", "is required");
    if (prompt->is_string()) {
      p.prompts.push_back(encode_text(prompt->get<std::string>(), "prompt", tok, false));
    } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number()) {
      p.prompts.push_back(token_ids(*prompt, "prompt", limits));
    } else if (prompt->is_array() && !prompt->empty()) {
      for (size_t i = 0; i < prompt->size(); ++i) {
        const json& item = (*prompt)[i];
        const std::string name = "prompt[" + std::to_string(i) + "]";
        if (item.is_string()) {
          p.prompts.push_back(encode_text(item.get<std::string>(), name, tok, false));
        } else if (item.is_array()) {
          p.prompts.push_back(token_ids(item, name, limits));
        } else {
          bad(name, "must be a string or a list of token ids");
        }
      }
    } else {
      bad("prompt", "must be a string, a list of strings, a list of token ids or a list of token-id lists");
    }
    if (p.prompts.size() > 64) bad("prompt", "at most 64 prompts per request");
  }

  // --- lengths ---
  const json* mt = field(body, "max_completion_tokens");
  if (!mt) mt = field(body, "max_tokens");
  const char* mt_name = field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  int64_t max_tokens = integer(body, mt_name, -1, 1, limits.max_tokens_limit);
  for (size_t i = 0; i < p.prompts.size(); ++i) {
    const int64_t len = static_cast<int64_t>(p.prompts[i].size());
    const std::string name =
        chat ? "messages" : (p.prompts.size() == 1 ? "prompt" : "prompt[" + std::to_string(i) + "]");
    if (len == 0) bad(name, "is empty (0 tokens)");
    const int64_t prompt_limit = std::min<int64_t>(limits.max_prompt_tokens, limits.max_ctx - 1);
    if (len > prompt_limit)
      bad(name, "This model's maximum context length is " + std::to_string(limits.max_ctx) +
                    " tokens and a prompt may have at most " + std::to_string(prompt_limit) +
                    " tokens; your prompt has " + std::to_string(len) + " tokens");
    if (mt && len + max_tokens > limits.max_ctx)
      bad(mt_name, "This model's maximum context length is " + std::to_string(limits.max_ctx) +
                       " tokens. However, you requested " + std::to_string(len + max_tokens) + " tokens (" +
                       std::to_string(len) + " in the prompt, " + std::to_string(max_tokens) +
                       " in the completion). Please reduce the prompt or max_tokens");
  }
  if (!mt) {
    // Unset: the configured default, shortened to what the longest prompt leaves of the context.
    int64_t room = limits.max_ctx;
    for (const auto& pr : p.prompts) room = std::min<int64_t>(room, limits.max_ctx - static_cast<int64_t>(pr.size()));
    max_tokens = std::min<int64_t>(limits.default_max_tokens, room);
  }
  p.max_tokens = static_cast<int32_t>(max_tokens);

  // --- sampling ---
  p.n = static_cast<int32_t>(integer(body, "n", 1, 1, limits.max_n));
  refuse_unsupported(body, chat, p.n);
  // The ranges are common/sampling.h's (SamplingParams::validate, which the scheduler runs again), except
  // temperature, which OpenAI's API caps at 2 (the sampler takes any finite value >= 0).
  constexpr double kApiMaxTemperature = 2.0;
  p.sampling.temperature = static_cast<float>(number(body, "temperature", 1.0, 0.0, kApiMaxTemperature));
  p.sampling.top_p = static_cast<float>(number(body, "top_p", 1.0, 0.0, 1.0));
  if (p.sampling.top_p <= 0.0f) bad("top_p", "must be in (0, 1], got 0");
  p.sampling.top_k = static_cast<int32_t>(integer(body, "top_k", -1, -1, INT32_MAX));
  p.sampling.presence_penalty = static_cast<float>(number(body, "presence_penalty", 0.0, -kMaxPenalty, kMaxPenalty));
  p.sampling.frequency_penalty = static_cast<float>(number(body, "frequency_penalty", 0.0, -kMaxPenalty, kMaxPenalty));
  // Beyond OpenAI's fields, vLLM's (same names, same ranges): min_p, repetition_penalty, min_tokens,
  // stop_token_ids.
  p.sampling.min_p = static_cast<float>(number(body, "min_p", 0.0, 0.0, 1.0));
  p.sampling.repetition_penalty =
      static_cast<float>(number(body, "repetition_penalty", 1.0, 0.0, kMaxRepetitionPenalty));
  if (p.sampling.repetition_penalty <= 0.0f) bad("repetition_penalty", "must be in (0, 2], got 0");
  p.sampling.min_tokens = static_cast<int32_t>(integer(body, "min_tokens", 0, 0, max_tokens));
  if (const json* lb = field(body, "logit_bias")) {
    if (!lb->is_object())
      bad("logit_bias", "must be an object mapping token ids to biases, got " + describe_value(*lb));
    if (lb->size() > static_cast<size_t>(kMaxLogitBias))
      bad("logit_bias", "at most " + std::to_string(kMaxLogitBias) + " entries, got " + std::to_string(lb->size()));
    for (const auto& [key, value] : lb->items()) {
      // JSON object keys are strings: "123". Only plain decimal integers (no sign, space or exponent).
      const bool digits = !key.empty() && key.size() <= 10 &&
                          std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
      const int64_t id = digits ? std::stoll(key) : -1;
      if (!digits || id >= limits.vocab)
        bad("logit_bias", "key " + describe_value(json(key)) + " is not a token id in the vocabulary [0, " +
                              std::to_string(limits.vocab) + ")");
      if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < -kMaxLogitBiasValue ||
          value.get<double>() > kMaxLogitBiasValue)
        bad("logit_bias",
            "the bias of token " + key + " must be a number in [-100, 100], got " + describe_value(value));
      p.logit_bias.push_back({static_cast<int32_t>(id), static_cast<float>(value.get<double>())});
    }
  }
  if (const json* st = field(body, "stop_token_ids")) {
    if (!st->is_array()) bad("stop_token_ids", "must be a list of token ids, got " + describe_value(*st));
    constexpr size_t kMaxStopTokenIds = 64;
    if (st->size() > kMaxStopTokenIds)
      bad("stop_token_ids", "at most " + std::to_string(kMaxStopTokenIds) + " ids, got " + std::to_string(st->size()));
    p.stop_token_ids = token_ids(*st, "stop_token_ids", limits);
  }
  if (const json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) bad("seed", "must be an integer, got " + describe_value(*seed));
    p.sampling.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  } else {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    p.sampling.seed = rng();
  }
  if (chat) {
    p.logprobs = boolean(body, "logprobs", false);
    p.sampling.n_logprobs = static_cast<int32_t>(integer(body, "top_logprobs", 0, 0, kMaxLogprobs));
    if (p.sampling.n_logprobs > 0 && !p.logprobs) bad("top_logprobs", "needs 'logprobs': true");
  } else if (const json* lp = field(body, "logprobs")) {
    if (lp->is_boolean()) {
      p.logprobs = lp->get<bool>();
    } else {
      p.sampling.n_logprobs = static_cast<int32_t>(integer(body, "logprobs", 0, 0, kMaxLogprobs));
      p.logprobs = true;
    }
  }

  // --- output ---
  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      p.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& s : *stop) {
        if (!s.is_string()) bad("stop", "must be a string or a list of strings");
        p.stop.push_back(s.get<std::string>());
      }
    } else {
      bad("stop", "must be a string or a list of strings");
    }
    if (p.stop.size() > 16) bad("stop", "at most 16 stop strings");
    for (const auto& s : p.stop) {
      if (s.empty()) bad("stop", "stop strings must not be empty");
      if (s.size() > 256) bad("stop", "a stop string may have at most 256 bytes");
    }
    if (!p.stop.empty() && !tok) bad("stop", "this model has no tokenizer, so stop strings cannot be matched");
  }
  p.echo = !chat && boolean(body, "echo", false);
  p.ignore_eos = boolean(body, "ignore_eos", false);
  p.stream = boolean(body, "stream", false);
  p.return_token_ids = boolean(body, "return_token_ids", tok == nullptr);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "must be an object");
    p.include_usage = boolean(*so, "include_usage", false);
  }
  if (const json* user = field(body, "user")) {
    if (!user->is_string()) bad("user", "must be a string");
    p.user = user->get<std::string>();
  }
  if (p.echo) {
    for (const auto& pr : p.prompts) p.echo_texts.push_back(tok ? tok->decode(pr, false) : "");
  }
  return p;
}

}  // namespace tessera::coordinator::api
