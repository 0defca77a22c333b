// coordinator/tokenizer/wordpiece.h — the BERT text pipeline: BertNormalizer, BertPreTokenizer, WordPiece.
//
// In:  one stretch of valid UTF-8 text between added tokens. Out: WordPiece token ids, identical to Hugging Face
// `tokenizers` for BERT-family tokenizer.json files (BERT, DistilBERT, MiniLM).
//  - bert_normalize(): clean_text (drop NUL, U+FFFD and Unicode "other" characters Cc/Cf/Cn/Co/Cs except
//    \t \n \r; every White_Space character becomes ' '), handle_chinese_chars (spaces around CJK ideographs),
//    strip_accents (NFD, then drop nonspacing marks Mn), lowercase (each character's full lower-case mapping,
//    without context, like Rust's char::to_lowercase). The Unicode data comes from ICU.
//  - bert_pre_tokenize(): split on White_Space (removed), then isolate every punctuation character (ASCII
//    punctuation or Unicode P*).
//  - WordPieceModel::encode_word(): greedy longest-match-first with the continuing-subword prefix ("##"); a
//    word longer than max_input_chars_per_word characters, or one that cannot be covered, is the unk token.
// Pure functions and an immutable model: thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/tokenizer/bpe.h"  // TokenMap

namespace tessera::tokenizer {

struct BertNormalizerOptions {
  bool clean_text = true;
  bool handle_chinese_chars = true;
  bool strip_accents = true;  // tokenizer.json's null means "same as lowercase"; the loader resolves it
  bool lowercase = true;
};

std::string bert_normalize(std::string_view text, const BertNormalizerOptions& options);
// Appends the words of `text` (views into it).
void bert_pre_tokenize(std::string_view text, std::vector<std::string_view>& words);

class WordPieceModel {
 public:
  // Throws tessera::Error naming `source` when the unk token is not in the vocabulary.
  WordPieceModel(TokenMap vocab, const std::string& unk_token, std::string continuing_subword_prefix,
                 size_t max_input_chars_per_word, const std::string& source);
  WordPieceModel(const WordPieceModel&) = delete;
  WordPieceModel& operator=(const WordPieceModel&) = delete;

  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const TokenMap& vocab() const { return vocab_; }
  int32_t find(std::string_view token) const;  // -1 when absent
  const std::string& prefix() const { return prefix_; }

 private:
  TokenMap vocab_;
  std::string prefix_;
  size_t max_chars_;
  int32_t unk_id_;
};

// HF's WordPiece decoder: tokens joined by spaces, a continuation's prefix glued to the previous token, and
// (cleanup) the spaces before punctuation and English contractions removed.
// HF applies the prefix and cleanup rules token by token, so one token can be decoded alone (for streaming).
std::string wordpiece_decode(const std::vector<std::string>& tokens, const std::string& prefix, bool cleanup);
std::string wordpiece_decode_token(std::string_view token, bool first, const std::string& prefix, bool cleanup);

}  // namespace tessera::tokenizer
