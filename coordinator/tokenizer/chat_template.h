// coordinator/tokenizer/chat_template.h — renders a conversation into the prompt text a chat model expects.
//
// We do not run Jinja: we recognize the template family from its source and render it natively. Supported:
//   ChatML (SmolLM2, Qwen, ...):  <|im_start|>{role}\n{content}<|im_end|>\n per message, and
//   <|im_start|>assistant\n when add_generation_prompt; when the template inserts a default system message
//   for conversations that do not start with one (SmolLM2: "You are a helpful AI assistant named SmolLM,
//   trained by Hugging Face"), that text is taken from the template source and inserted the same way.
// The output equals transformers' apply_chat_template(tokenize=False) for these templates (tested against it).
// Immutable after construction; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "coordinator/tokenizer/tokenizer.h"

namespace tessera::tokenizer {

class ChatTemplate {
 public:
  ChatTemplate() = default;
  // `source` names the file and key for error messages. An empty template gives kind kNone.
  ChatTemplate(std::string jinja, std::string source);

  bool supported() const { return kind_ != Kind::kNone; }
  const std::string& jinja() const { return jinja_; }
  // Throws tessera::Error (naming the source) when the template is missing or not supported.
  std::string render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const;

 private:
  enum class Kind { kNone, kChatMl };
  Kind kind_ = Kind::kNone;
  std::string jinja_, source_;
  std::optional<std::string> default_system_;
};

}  // namespace tessera::tokenizer
