// coordinator/tokenizer/pre_tokenizer.cpp — see pre_tokenizer.h.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "coordinator/tokenizer/pre_tokenizer.h"

#include <pcre2.h>

#include "common/check.h"

namespace tessera::tokenizer {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// HF runs these patterns on Oniguruma, whose Unicode \s is the White_Space property; PCRE2's UCP \s lacks
// U+0085 (NEL). Rewrite \s and \S so that both engines agree.
std::string harmonize_whitespace(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (e == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // a ']' right after '[' or '[^' is literal
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

Regex::Regex(const std::string& pattern, bool literal, const std::string& where) {
  const std::string p = literal ? pattern : harmonize_whitespace(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  // PCRE2_LITERAL refuses PCRE2_UCP ("invalid option bits"), which only changes what \d, \w, ... match anyway.
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), options, &error, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(error, msg, sizeof msg);
    throw Error(where + ": cannot compile pattern '" + pattern + "' at offset " + std::to_string(offset) + ": " +
                reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // when JIT is unavailable, pcre2_match interprets
  code_ = std::shared_ptr<void>(code, [](void* c) { pcre2_code_free(static_cast<pcre2_code*>(c)); });
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_.get());
  // One match-data block per thread and pattern shape: pcre2_match_data is not shareable between threads.
  thread_local std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(pcre2_match_data_create(8, nullptr));
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error(std::string("pre-tokenizer regex failed: ") + reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    size_t start = ov[0], end = ov[1];
    if (end == start) {  // an empty match: step over one character
      pos = start + 1;
      while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    out.emplace_back(start, end);
    pos = end;
  }
}

void PreTokenizer::add_split(Regex regex, SplitBehavior behavior, bool invert) {
  Step s;
  s.kind = Step::Kind::kSplit;
  s.regex.emplace(std::move(regex));
  s.behavior = behavior;
  s.invert = invert;
  steps_.push_back(std::move(s));
}

void PreTokenizer::add_digits(bool individual_digits) {
  // HF: split on char::is_numeric (general categories Nd, Nl, No = \p{N}); Isolated, or Contiguous for runs
  add_split(Regex(individual_digits ? R"(\p{N})" : R"(\p{N}+)", false, "Digits"), SplitBehavior::kIsolated, false);
}

void PreTokenizer::add_byte_level(bool add_prefix_space, bool use_regex) {
  Step s;
  s.kind = Step::Kind::kByteLevel;
  if (use_regex) s.regex.emplace(kGpt2Pattern, false, "ByteLevel");
  s.add_prefix_space = add_prefix_space;
  steps_.push_back(std::move(s));
}

bool PreTokenizer::byte_level_is_last() const {
  return !steps_.empty() && steps_.back().kind == Step::Kind::kByteLevel;
}

bool PreTokenizer::has_byte_level() const {
  for (const auto& s : steps_)
    if (s.kind == Step::Kind::kByteLevel) return true;
  return false;
}

std::optional<PreTokenizer> PreTokenizer::from_gguf_name(const std::string& name) {
  PreTokenizer p;
  if (name == "gpt-2" || name == "gpt2" || name == "default") {
    p.add_byte_level(false, true);
  } else if (name == "smollm" || name == "starcoder" || name == "refact") {
    p.add_digits(true);
    p.add_byte_level(false, true);
  } else if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") {
    p.add_split(Regex(kLlama3Pattern, false, "llama-bpe"), SplitBehavior::kIsolated, false);
    p.add_byte_level(false, false);
  } else if (name == "qwen2") {
    p.add_split(Regex(kQwen2Pattern, false, "qwen2"), SplitBehavior::kIsolated, false);
    p.add_byte_level(false, false);
  } else {
    return std::nullopt;
  }
  return p;
}

namespace {

using Range = std::pair<size_t, size_t>;

// Per-thread scratch vectors are reused across calls; one huge input must not pin its memory forever.
template <typename T>
void release_if_large(std::vector<T>& v) {
  constexpr size_t kKeepBytes = 1 << 20;
  if (v.capacity() * sizeof(T) > kKeepBytes) std::vector<T>().swap(v);
}

// HF's SplitDelimiterBehavior applied to (range, is_match) pieces covering the text.
void apply_behavior(const std::vector<std::pair<Range, bool>>& pieces, SplitBehavior b, std::vector<Range>& out) {
  switch (b) {
    case SplitBehavior::kRemoved:
      for (const auto& [r, m] : pieces)
        if (!m) out.push_back(r);
      return;
    case SplitBehavior::kIsolated:
      for (const auto& [r, m] : pieces) out.push_back(r);
      return;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      const size_t base = out.size();
      for (const auto& [r, m] : pieces) {
        if (m && !prev_match && out.size() > base)
          out.back().second = r.second;
        else
          out.push_back(r);
        prev_match = m;
      }
      return;
    }
    case SplitBehavior::kMergedWithNext: {
      std::vector<Range> rev;
      bool prev_match = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->second && !prev_match && !rev.empty())
          rev.back().first = it->first.first;
        else
          rev.push_back(it->first);
        prev_match = it->second;
      }
      out.insert(out.end(), rev.rbegin(), rev.rend());
      return;
    }
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      const size_t base = out.size();
      for (const auto& [r, m] : pieces) {
        if (m == prev_match && out.size() > base)
          out.back().second = r.second;
        else
          out.push_back(r);
        prev_match = m;
      }
      return;
    }
  }
}

// Splits `text` by `regex`; appends the resulting non-empty pieces (as sub-views of text).
void split_one(std::string_view text, const Regex& regex, SplitBehavior behavior, bool invert,
               std::vector<std::string_view>& out) {
  // scratch reused across calls on this thread: encode() calls this once per word
  thread_local std::vector<Range> matches;
  thread_local std::vector<std::pair<Range, bool>> pieces;
  thread_local std::vector<Range> ranges;
  matches.clear(), pieces.clear(), ranges.clear();
  regex.find_all(text, matches);
  size_t prev = 0;
  for (const auto& m : matches) {
    if (prev != m.first) pieces.push_back({{prev, m.first}, invert});
    pieces.push_back({m, !invert});
    prev = m.second;
  }
  if (prev != text.size()) pieces.push_back({{prev, text.size()}, invert});
  apply_behavior(pieces, behavior, ranges);
  for (const auto& r : ranges)
    if (r.second > r.first) out.push_back(text.substr(r.first, r.second - r.first));
  release_if_large(matches), release_if_large(pieces), release_if_large(ranges);
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& words,
                         std::deque<std::string>& owned) const {
  if (text.empty()) return;
  TESSERA_CHECK_MSG(byte_level_is_last(), "a byte-level BPE pre-tokenizer must end with its ByteLevel step");
  thread_local std::vector<std::string_view> cur, next;
  cur.assign(1, text);
  for (size_t k = 0; k < steps_.size(); ++k) {
    const Step& step = steps_[k];
    std::vector<std::string_view>& out = k + 1 == steps_.size() ? words : next;
    if (&out == &next) next.clear();
    for (std::string_view piece : cur) {
      if (step.kind == Step::Kind::kByteLevel && step.add_prefix_space && !piece.starts_with(' ')) {
        std::string& spaced = owned.emplace_back(1, ' ');  // (" " + piece trips GCC 12's -Wrestrict)
        spaced.append(piece);
        piece = spaced;
      }
      if (step.regex)
        split_one(piece, *step.regex, step.behavior, step.invert, out);
      else
        out.push_back(piece);
    }
    if (&out == &next) std::swap(cur, next);
  }
  release_if_large(cur), release_if_large(next);
}

}  // namespace tessera::tokenizer
