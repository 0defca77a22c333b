// coordinator/tokenizer/chat_template.cpp — see chat_template.h.
#include "coordinator/tokenizer/chat_template.h"

#include "common/check.h"

namespace tessera::tokenizer {
namespace {

// Undo the escapes of a Jinja string literal ('\n' written as backslash-n in the template source).
std::string unescape_jinja(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char e = s[++i];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        default:
          out += e;
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

bool contains(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

}  // namespace

ChatTemplate::ChatTemplate(std::string jinja, std::string source)
    : jinja_(std::move(jinja)), source_(std::move(source)) {
  if (jinja_.empty()) return;
  // ChatML: every message is framed as <|im_start|>ROLE\nCONTENT<|im_end|>\n
  const bool chatml =
      contains(jinja_, "'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'") ||
      contains(jinja_, "'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'") ||
      contains(jinja_, "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>") ||
      contains(jinja_, "'<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>'") ||
      contains(jinja_, "'<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>'");
  if (!chatml) return;
  // Tool-calling templates (Qwen2.5 and later) branch on roles and tools in ways we do not render.
  if (contains(jinja_, "tools") || contains(jinja_, "tool_calls")) return;
  kind_ = Kind::kChatMl;
  // A default system message, inserted when the conversation does not start with a system message:
  //   {% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nTEXT<|im_end|>\n' }}{% endif %}
  const bool conditional = contains(jinja_, "messages[0]['role'] != 'system'") ||
                           contains(jinja_, "messages[0].role != 'system'") ||
                           contains(jinja_, "messages[0]['role'] != \"system\"");
  for (std::string_view marker : {"<|im_start|>system\\n", "<|im_start|>system\n"}) {
    const size_t at = jinja_.find(marker);
    if (!conditional || at == std::string::npos) continue;
    const size_t begin = at + marker.size();
    const size_t end = jinja_.find("<|im_end|>", begin);
    if (end == std::string::npos) break;
    default_system_ = unescape_jinja(std::string_view(jinja_).substr(begin, end - begin));
    break;
  }
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const {
  if (kind_ == Kind::kNone) {
    if (jinja_.empty()) throw Error(source_ + ": the model has no chat template");
    throw Error(source_ + ": unsupported chat template (tessera renders ChatML templates only)");
  }
  std::string out;
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (i == 0 && default_system_ && msgs[0].role != "system") {
      out += "<|im_start|>system\n" + *default_system_ + "<|im_end|>\n";
    }
    out += "<|im_start|>" + msgs[i].role + "\n" + msgs[i].content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace tessera::tokenizer
