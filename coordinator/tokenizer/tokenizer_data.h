// coordinator/tokenizer/tokenizer_data.h — the tables a loaded tokenizer holds (internal to the tokenizer).
//
// Built once by a loader (load_json.cpp, load_gguf.cpp) through finish_tokenizer(), then shared read-only by
// every copy of the Tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/tokenizer/added_tokens.h"
#include "coordinator/tokenizer/bpe.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/pre_tokenizer.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/wordpiece.h"

namespace tessera::tokenizer {

// Token ids a loader accepts: [0, kMaxVocab). The by-id tables are dense, so an id is memory (a tokenizer.json
// naming id 10^9 would ask for ~64 GB); 2^22 is 16x the largest vocabularies in use (Gemma's 262144).
inline constexpr int64_t kMaxVocab = int64_t{1} << 22;

struct TokenizerData {
  std::string source;  // the file it came from, for messages
  // Exactly one model: byte-level BPE (with pre_tokenizer) or WordPiece (BertNormalizer, BertPreTokenizer).
  std::unique_ptr<BpeModel> bpe;
  PreTokenizer pre_tokenizer;
  std::unique_ptr<WordPieceModel> wordpiece;
  bool bert_normalizer = false;  // WordPiece: normalize with bert_options (tokenizer.json normalizer non-null)
  BertNormalizerOptions bert_options;
  bool wordpiece_cleanup = true;  // the WordPiece decoder's cleanup flag
  int32_t max_length = 0;         // truncation length, specials included (0: none)
  AddedTokens added;
  int32_t bos_id = -1, eos_id = -1;
  bool add_bos = false, add_eos = false;
  ChatTemplate chat_template;

  // Filled by finish_tokenizer():
  int32_t vocab_size = 0;
  std::vector<std::string> id_to_token;  // vocabulary / added-token text by id ("" for holes)
  std::vector<std::string> id_to_bytes;  // what decode() emits for the id
  std::vector<uint8_t> special;          // 1 for special added tokens
  std::vector<int32_t> stop_ids;
};

// Derives the by-id tables and checks the ids (bos/eos in range). Throws tessera::Error naming data.source.
std::shared_ptr<const TokenizerData> finish_tokenizer(std::unique_ptr<TokenizerData> data);

}  // namespace tessera::tokenizer
