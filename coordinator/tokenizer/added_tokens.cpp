// coordinator/tokenizer/added_tokens.cpp — see added_tokens.h.
#include "coordinator/tokenizer/added_tokens.h"

#include <algorithm>

#include "coordinator/tokenizer/utf8.h"

namespace tessera::tokenizer {
namespace {

// The code point that ends at s.end() (s valid UTF-8, non-empty).
uint32_t last_code_point(std::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  return utf8::next_code_point(s, start);
}

// HF's is_word_character approximated for single_word: letters/digits/underscore; ASCII exact, any non-ASCII
// non-space character counts as a word character.
bool is_word_char(uint32_t cp) {
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  return !utf8::is_white_space(cp);
}

}  // namespace

AddedTokens::AddedTokens(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    by_first_byte_[static_cast<uint8_t>(tokens_[i].content[0])].push_back(static_cast<int32_t>(i));
  }
  for (auto& v : by_first_byte_) {
    std::stable_sort(v.begin(), v.end(),
                     [&](int32_t a, int32_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
  }
}

void AddedTokens::split(std::string_view text, bool parse_special, std::vector<TextPiece>& out) const {
  size_t emitted = 0;  // text[0, emitted) is already in out
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& candidates = by_first_byte_[static_cast<uint8_t>(text[pos])];
    const AddedToken* hit = nullptr;
    for (int32_t i : candidates) {
      const AddedToken& t = tokens_[i];
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      hit = &t;  // leftmost-longest: the first candidate that matches is the longest one
      break;
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + hit->content.size();
    if (!parse_special && hit->special) {  // HF consumes the match and leaves it as plain text
      pos = stop;
      continue;
    }
    if (hit->single_word) {
      const bool start_ok = start == 0 || !is_word_char(last_code_point(text.substr(0, start)));
      size_t p = stop;
      const bool stop_ok = stop == text.size() || !is_word_char(utf8::next_code_point(text, p));
      if (!start_ok || !stop_ok) {
        pos = stop;
        continue;
      }
    }
    if (hit->lstrip) {
      size_t s = start;
      while (s > emitted) {
        size_t b = s - 1;
        while (b > 0 && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
        size_t q = b;
        if (!utf8::is_white_space(utf8::next_code_point(text, q))) break;
        s = b;
      }
      start = s;
    }
    if (hit->rstrip) {
      while (stop < text.size()) {
        size_t q = stop;
        if (!utf8::is_white_space(utf8::next_code_point(text, q))) break;
        stop = q;
      }
    }
    if (emitted < start) out.push_back({text.substr(emitted, start - emitted), -1});
    out.push_back({text.substr(start, stop - start), hit->id});
    emitted = pos = stop;
  }
  if (emitted < text.size()) out.push_back({text.substr(emitted), -1});
}

}  // namespace tessera::tokenizer
