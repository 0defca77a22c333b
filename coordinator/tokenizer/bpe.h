// coordinator/tokenizer/bpe.h — the BPE model: one word (raw bytes) in, token ids out.
//
// Byte-level: every byte starts as the vocabulary token of its byte-level character (GPT-2's map), so the
// merge loop and the word cache work on raw bytes and ids, never on re-encoded strings.
// Merges are applied lowest rank first, leftmost first among equal ranks, one at a time — the same order as
// HF tokenizers' BPE::merge_word, so ties resolve identically. A character missing from the vocabulary becomes
// the unk token when there is one and is dropped otherwise (HF does the same).
// Thread-safety: encode_word() is const and may run concurrently; the word cache is behind a shared_mutex.
#pragma once

#include <array>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tessera::tokenizer {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // merges: pairs of vocabulary strings, in rank order. Throws tessera::Error naming `source` when a merge
  // refers to a token that is not in the vocabulary.
  BpeModel(TokenMap vocab, const std::vector<std::pair<std::string, std::string>>& merges, int32_t unk_id,
           bool ignore_merges, const std::string& source);
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one word, given as raw bytes.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const TokenMap& vocab() const { return vocab_; }
  int32_t find(std::string_view token) const;  // -1 when absent

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  struct MergeTarget {
    int32_t rank, new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  TokenMap vocab_;
  std::array<int32_t, 256> byte_ids_;  // the token of each byte's byte-level character (-1: not in the vocabulary)
  std::unordered_map<uint64_t, MergeTarget> merges_;
  int32_t unk_id_;
  bool ignore_merges_;

  static constexpr size_t kCacheCapacity = 1 << 17;
  static constexpr size_t kMaxCachedWord = 256;  // bytes; longer words are rare and would bloat the cache
  mutable std::shared_mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace tessera::tokenizer
