// coordinator/tokenizer/utf8.h — UTF-8 checks and the lossy conversion Hugging Face uses for decoding.
//
// lossy() replaces every ill-formed subsequence by U+FFFD following the "maximal subpart" rule (Unicode §3.9,
// WHATWG), which is what Rust's String::from_utf8_lossy does, so our decode() output equals HF's byte for byte.
// Pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tessera::tokenizer::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed sequence starting at s[0] (1..4), or 0 if s does not start with one. When it
// returns 0, *maximal_subpart gets the length of the longest prefix of a well-formed sequence (>= 1), and
// *truncated whether s simply ended before that sequence was complete.
size_t sequence_length(std::string_view s, size_t* maximal_subpart = nullptr, bool* truncated = nullptr);

bool is_valid(std::string_view s);
// Offset of the first byte that is not well-formed, or s.size() when all of s is.
size_t first_invalid(std::string_view s);

// Decodes s with U+FFFD for every maximal ill-formed subpart. When hold_back_incomplete, a trailing sequence that
// is well-formed so far but cut short is not converted: its length is left in *held (to be completed by later
// bytes); otherwise it becomes one U+FFFD, like from_utf8_lossy at the end of the input.
std::string lossy(std::string_view s, bool hold_back_incomplete = false, size_t* held = nullptr);

// Appends the UTF-8 encoding of code point cp (cp must be a Unicode scalar value).
void append_code_point(std::string& out, uint32_t cp);
// Decodes the well-formed sequence at s[pos], advancing pos. Precondition: the input is valid UTF-8.
uint32_t next_code_point(std::string_view s, size_t& pos);

// Unicode White_Space (what Rust's char::is_whitespace tests).
bool is_white_space(uint32_t cp);

}  // namespace tessera::tokenizer::utf8
