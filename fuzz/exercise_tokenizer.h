// fuzz/exercise_tokenizer.h — what the fuzz targets do with a tokenizer that loaded (from a fuzzed GGUF or
// tokenizer.json): encode fixed and input-derived text in every mode, decode, stream-decode, render the chat
// template. Header-only, so that only the targets that link the tokenizer include it.
//
// Must hold (checked, abort otherwise): every id encode() returns is in [0, vocab_size()); the concatenation of
// IncrementalDecoder::push() over ids and flush() equals decode(ids), with and without skip_special.
// Allowed: tessera::Error (invalid UTF-8 text, an id out of range, a missing or unsupported chat template).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/check.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "fuzz/fuzz_support.h"

namespace tessera::fuzz {

inline void check_stream_decode(const char* target, const tokenizer::Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (bool skip : {false, true}) {
    std::string whole;
    try {
      whole = tok.decode(ids, skip);
    } catch (const Error&) {
      continue;  // an id out of range
    }
    tokenizer::IncrementalDecoder stream(tok, skip);
    std::string pieces;
    for (int32_t id : ids) pieces += stream.push(id);
    pieces += stream.flush();
    FUZZ_ASSERT(target, pieces == whole, "streamed decode differs from decode()");
  }
}

// `extra`: bytes of the input to encode as text and to read as token ids.
inline void exercise_tokenizer(const char* target, const tokenizer::Tokenizer& tok, std::string_view extra) {
  const int32_t vocab = tok.vocab_size();
  const std::string_view texts[] = {"Hello world", "<|im_start|>user\n12345 h\xc3\xa9llo\t  x<|im_end|>\n",
                                    " \xf0\x9f\x98\x80\xe2\x82\xac a  b\n\n", extra};
  for (std::string_view text : texts) {
    for (int mode = 0; mode < 4; ++mode) {
      std::vector<int32_t> ids;
      try {
        ids = tok.encode(text, /*add_special=*/mode & 1, /*parse_special=*/mode & 2);
      } catch (const Error&) {
        continue;
      }
      for (int32_t id : ids) FUZZ_ASSERT(target, id >= 0 && id < vocab, "encode() returned id " + std::to_string(id));
      check_stream_decode(target, tok, ids);
    }
  }
  // The input's bytes as ids, a little past both ends of the vocabulary.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < extra.size() && ids.size() < 64; i += 2) {
    const int64_t v = static_cast<uint8_t>(extra[i]) | static_cast<uint8_t>(extra[i + 1]) << 8;
    ids.push_back(static_cast<int32_t>(v % (int64_t{vocab} + 2) - 1));
  }
  check_stream_decode(target, tok, ids);
  for (int32_t id : ids) {
    (void)tok.id_to_token(id);
    (void)tok.is_special(id);
    try {
      (void)tok.token_bytes(id);
    } catch (const Error&) {
    }
  }
  (void)tok.token_to_id(extra);
  (void)tok.stop_ids();
  for (bool gen : {false, true}) {
    try {
      (void)tok.apply_chat_template({{"system", "s"}, {"user", std::string(extra)}}, gen);
      (void)tok.apply_chat_template({{"user", "hi"}, {"assistant", "yo"}, {"user", std::string(extra)}}, gen);
    } catch (const Error&) {
    }
  }
}

}  // namespace tessera::fuzz
