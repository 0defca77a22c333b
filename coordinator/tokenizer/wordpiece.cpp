// coordinator/tokenizer/wordpiece.cpp — see wordpiece.h.
#include "coordinator/tokenizer/wordpiece.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "common/check.h"
#include "coordinator/tokenizer/utf8.h"

namespace tessera::tokenizer {
namespace {

// BertNormalizer's is_control: the Unicode "other" categories, minus the three it counts as whitespace.
bool is_control(uint32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_UNASSIGNED:
    case U_PRIVATE_USE_CHAR:
    case U_SURROGATE:
      return true;
    default:
      return false;
  }
}

bool is_chinese_char(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool is_punctuation(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
           (cp >= 0x7B && cp <= 0x7E);
  return (U_GET_GC_MASK(static_cast<UChar32>(cp)) & U_GC_P_MASK) != 0;
}

std::u16string to_utf16(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    const uint32_t cp = utf8::next_code_point(s, pos);
    if (cp < 0x10000) {
      out.push_back(static_cast<char16_t>(cp));
    } else {
      out.push_back(static_cast<char16_t>(0xD800 + ((cp - 0x10000) >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + ((cp - 0x10000) & 0x3FF)));
    }
  }
  return out;
}

// NFD of the whole text (canonical reordering spans characters), then the nonspacing marks dropped.
std::string strip_accents(const std::string& text) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* nfd = unorm2_getNFDInstance(&err);
  TESSERA_CHECK(U_SUCCESS(err));
  const std::u16string src = to_utf16(text);
  std::u16string dst(src.size() * 3 + 16, u'\0');
  int32_t n = unorm2_normalize(nfd, reinterpret_cast<const UChar*>(src.data()), static_cast<int32_t>(src.size()),
                               reinterpret_cast<UChar*>(dst.data()), static_cast<int32_t>(dst.size()), &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    err = U_ZERO_ERROR;
    dst.assign(static_cast<size_t>(n), u'\0');
    n = unorm2_normalize(nfd, reinterpret_cast<const UChar*>(src.data()), static_cast<int32_t>(src.size()),
                         reinterpret_cast<UChar*>(dst.data()), n, &err);
  }
  TESSERA_CHECK(U_SUCCESS(err));
  std::string out;
  out.reserve(text.size());
  for (int32_t i = 0; i < n;) {
    UChar32 cp;
    U16_NEXT(dst.data(), i, n, cp);
    if (u_charType(cp) != U_NON_SPACING_MARK) utf8::append_code_point(out, static_cast<uint32_t>(cp));
  }
  return out;
}

// Each character's full lower-case mapping on its own (no final-sigma context), like Rust's char::to_lowercase.
void append_lower(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
    return;
  }
  UChar src[2];
  int32_t len = 0;
  U16_APPEND_UNSAFE(src, len, static_cast<UChar32>(cp));
  UChar dst[8];
  UErrorCode err = U_ZERO_ERROR;
  const int32_t n = u_strToLower(dst, 8, src, len, "", &err);
  if (U_FAILURE(err) || n > 8) {
    utf8::append_code_point(out, cp);
    return;
  }
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(dst, i, n, c);
    utf8::append_code_point(out, static_cast<uint32_t>(c));
  }
}

}  // namespace

std::string bert_normalize(std::string_view text, const BertNormalizerOptions& o) {
  std::string s;
  s.reserve(text.size() + 8);
  size_t pos = 0;
  while (pos < text.size()) {
    const uint32_t cp = utf8::next_code_point(text, pos);
    if (o.clean_text) {
      if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
      if (cp == '\t' || cp == '\n' || cp == '\r' || utf8::is_white_space(cp)) {
        s.push_back(' ');
        continue;
      }
    }
    if (o.handle_chinese_chars && is_chinese_char(cp)) {
      s.push_back(' ');
      utf8::append_code_point(s, cp);
      s.push_back(' ');
      continue;
    }
    utf8::append_code_point(s, cp);
  }
  if (o.strip_accents) s = strip_accents(s);
  if (!o.lowercase) return s;
  std::string out;
  out.reserve(s.size());
  pos = 0;
  while (pos < s.size()) append_lower(out, utf8::next_code_point(s, pos));
  return out;
}

void bert_pre_tokenize(std::string_view text, std::vector<std::string_view>& words) {
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    const size_t at = pos;
    const uint32_t cp = utf8::next_code_point(text, pos);
    const bool space = utf8::is_white_space(cp);
    if (!space && !is_punctuation(cp)) continue;
    if (at > start) words.push_back(text.substr(start, at - start));
    if (!space) words.push_back(text.substr(at, pos - at));
    start = pos;
  }
  if (text.size() > start) words.push_back(text.substr(start));
}

WordPieceModel::WordPieceModel(TokenMap vocab, const std::string& unk_token, std::string continuing_subword_prefix,
                               size_t max_input_chars_per_word, const std::string& source)
    : vocab_(std::move(vocab)), prefix_(std::move(continuing_subword_prefix)), max_chars_(max_input_chars_per_word) {
  const auto it = vocab_.find(unk_token);
  if (it == vocab_.end()) throw Error(source + ": key 'model.unk_token': '" + unk_token + "' is not in the vocabulary");
  unk_id_ = it->second;
}

int32_t WordPieceModel::find(std::string_view token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

void WordPieceModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  size_t n_chars = 0;
  for (char c : word) n_chars += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  if (n_chars > max_chars_) {
    out.push_back(unk_id_);
    return;
  }
  const size_t first = out.size();
  std::string candidate;
  size_t start = 0;
  while (start < word.size()) {
    size_t end = word.size();
    int32_t id = -1;
    while (start < end) {
      candidate.assign(start > 0 ? prefix_ : std::string());
      candidate.append(word.substr(start, end - start));
      id = find(candidate);
      if (id >= 0) break;
      do --end;  // back off one whole character
      while (end > start && (static_cast<uint8_t>(word[end]) & 0xC0) == 0x80);
    }
    if (id < 0) {
      out.resize(first);
      out.push_back(unk_id_);
      return;
    }
    out.push_back(id);
    start = end;
  }
}

std::string wordpiece_decode_token(std::string_view token, bool first, const std::string& prefix, bool cleanup) {
  std::string t;
  if (!first && token.substr(0, prefix.size()) == prefix) {
    t = token.substr(prefix.size());
  } else {
    t.reserve(token.size() + 1);
    if (!first) t.push_back(' ');
    t.append(token);
  }
  if (!cleanup) return t;
  static const std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},   {" ?", "?"},           {" !", "!"},   {" ,", ","},     {" ' ", "'"},   {" n't", "n't"},
      {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {  // each rule over the whole token, left to right, like str::replace
    std::string r;
    size_t p = 0;
    for (size_t q; (q = t.find(from, p)) != std::string::npos; p = q + from.size()) r.append(t, p, q - p).append(to);
    r.append(t, p);
    t = std::move(r);
  }
  return t;
}

std::string wordpiece_decode(const std::vector<std::string>& tokens, const std::string& prefix, bool cleanup) {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) out += wordpiece_decode_token(tokens[i], i == 0, prefix, cleanup);
  return out;
}

}  // namespace tessera::tokenizer
