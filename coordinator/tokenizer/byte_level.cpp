// coordinator/tokenizer/byte_level.cpp — see byte_level.h.
#include "coordinator/tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include "coordinator/tokenizer/utf8.h"

namespace tessera::tokenizer::byte_level {
namespace {

struct Tables {
  std::array<std::string, 256> byte_to_text;    // UTF-8 of the code point standing for each byte
  std::array<int16_t, 324> code_point_to_byte;  // code points used are < 256 + 68; -1 = not in the alphabet

  Tables() {
    code_point_to_byte.fill(-1);
    // bytes that are printable in Latin-1 stand for themselves; the others get 256, 257, ... in byte order
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const int cp = printable(b) ? b : next++;
      utf8::append_code_point(byte_to_text[b], static_cast<uint32_t>(cp));
      code_point_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

void to_unicode(std::string_view bytes, std::string& out) {
  const auto& t = tables();
  for (char c : bytes) out.append(t.byte_to_text[static_cast<uint8_t>(c)]);
}

std::string to_unicode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  to_unicode(bytes, out);
  return out;
}

bool to_bytes(std::string_view text, std::string& out) {
  if (!utf8::is_valid(text)) return false;
  const auto& t = tables();
  const size_t start = out.size();
  size_t pos = 0;
  while (pos < text.size()) {
    const uint32_t cp = utf8::next_code_point(text, pos);
    if (cp >= t.code_point_to_byte.size() || t.code_point_to_byte[cp] < 0) {
      out.resize(start);
      return false;
    }
    out.push_back(static_cast<char>(t.code_point_to_byte[cp]));
  }
  return true;
}

}  // namespace tessera::tokenizer::byte_level
