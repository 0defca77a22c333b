// coordinator/tokenizer/pre_tokenizer.h — splits text into words before BPE, like HF's pre_tokenizers.
//
// In:  a valid UTF-8 string (one stretch of text between added tokens).
// Out: the words as raw bytes, ready for BPE (the BPE model applies the byte-level alphabet itself).
// A PreTokenizer is a sequence of steps, mirroring tokenizer.json's pre_tokenizer:
//   Split(regex or literal, behavior, invert)   — regexes run on PCRE2 (UTF + UCP, JIT when available)
//   Digits(individual_digits)                   — a Split on \p{N} (or \p{N}+), Isolated
//   ByteLevel(add_prefix_space, use_regex)      — GPT-2's regex split; the byte → character map is implied
//                                                 (so ByteLevel must be the last step, as in every HF file)
// GGUF files name a pre-tokenizer (tokenizer.ggml.pre); from_gguf_name() builds the same steps HF uses.
// Immutable after construction; split() is thread-safe (match data is per call).
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::tokenizer {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A compiled PCRE2 pattern (shared, immutable).
class Regex {
 public:
  // Throws tessera::Error naming `where` when the pattern does not compile.
  Regex(const std::string& pattern, bool literal, const std::string& where);
  // Byte ranges [start, end) of the non-empty, non-overlapping matches in text, left to right.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  std::shared_ptr<void> code_;  // pcre2_code_8
};

class PreTokenizer {
 public:
  void add_split(Regex regex, SplitBehavior behavior, bool invert);
  void add_digits(bool individual_digits);
  void add_byte_level(bool add_prefix_space, bool use_regex);
  bool has_byte_level() const;
  bool byte_level_is_last() const;

  // GGUF's tokenizer.ggml.pre values (llama.cpp's names): "gpt-2"/"default", "smollm"/"starcoder"/"refact",
  // "llama-bpe"/"llama3", "qwen2". std::nullopt for a name we do not know.
  static std::optional<PreTokenizer> from_gguf_name(const std::string& name);

  // Appends the words of `text` to `words`: views into `text`, or into `owned` where a step had to rewrite a
  // piece (ByteLevel's add_prefix_space).
  void split(std::string_view text, std::vector<std::string_view>& words, std::deque<std::string>& owned) const;

 private:
  struct Step {
    enum class Kind { kSplit, kByteLevel } kind = Kind::kSplit;
    std::optional<Regex> regex;  // kSplit, and kByteLevel with use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  std::vector<Step> steps_;
};

// The regex that HF's ByteLevel pre-tokenizer (use_regex) applies: GPT-2's.
extern const char* const kGpt2Pattern;

}  // namespace tessera::tokenizer
