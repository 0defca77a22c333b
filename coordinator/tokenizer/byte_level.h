// coordinator/tokenizer/byte_level.h — GPT-2's reversible byte ⇄ printable-character map.
//
// Byte-level BPE vocabularies store every byte as a printable code point ("Ġ" is the space byte 0x20) so that
// no token contains whitespace or control characters. to_unicode() maps raw bytes into that alphabet (before
// BPE); to_bytes() maps a vocabulary string back, returning false when a character is outside the alphabet
// (added tokens such as "<|im_end|>" then decode to their own UTF-8, as in HF's ByteLevel decoder).
// Tables are built once (function-local statics); thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace tessera::tokenizer::byte_level {

// Appends the byte-level form of `bytes` to out.
void to_unicode(std::string_view bytes, std::string& out);
std::string to_unicode(std::string_view bytes);
// Maps a byte-level string back to bytes; false if `text` has a character that is not in the alphabet.
bool to_bytes(std::string_view text, std::string& out);

}  // namespace tessera::tokenizer::byte_level
