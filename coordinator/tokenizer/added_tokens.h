// coordinator/tokenizer/added_tokens.h — tokens matched in the raw text before any pre-tokenization.
//
// In:  a valid UTF-8 text. Out: the text cut into stretches, each either one added token (its id) or plain
// text for the pre-tokenizer + BPE. Matching follows HF's AddedVocabulary: leftmost match, longest first at a
// position; special tokens are skipped when parse_special is false (non-special added tokens always match);
// single_word / lstrip / rstrip as in HF.
// Immutable after construction; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false, lstrip = false, rstrip = false;
};

struct TextPiece {
  std::string_view text;
  int32_t id;  // the added token, or -1 for plain text
};

class AddedTokens {
 public:
  AddedTokens() = default;
  explicit AddedTokens(std::vector<AddedToken> tokens);

  void split(std::string_view text, bool parse_special, std::vector<TextPiece>& out) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  std::vector<AddedToken> tokens_;
  std::array<std::vector<int32_t>, 256> by_first_byte_;  // indexes into tokens_, longest content first
};

}  // namespace tessera::tokenizer
