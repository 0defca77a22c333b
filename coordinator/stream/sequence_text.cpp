// coordinator/stream/sequence_text.cpp — incremental detokenization with stop-string hold-back.
#include "coordinator/stream/sequence_text.h"

#include <algorithm>
#include <utility>

namespace tessera::coordinator::stream {

SequenceText::SequenceText(const tokenizer::Tokenizer* tokenizer, std::vector<std::string> stop, int32_t min_tokens)
    : stop_(std::move(stop)), min_tokens_(min_tokens) {
  if (tokenizer) decoder_.emplace(*tokenizer, /*skip_special=*/true);
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
}

std::string SequenceText::push(int32_t token) {
  if (stopped_) return "";
  ++n_tokens_;
  if (!decoder_) return "";
  held_ += decoder_->push(token);
  if (n_tokens_ < min_tokens_) return std::exchange(held_, std::string());  // no stop string ends it yet
  return release();
}

std::string SequenceText::finish() {
  if (stopped_ || !decoder_) return "";
  held_ += decoder_->flush();
  std::string out = release();
  out += held_;  // nothing more can complete a stop string
  held_.clear();
  return out;
}

std::string SequenceText::release() {
  // The earliest stop string wins (what a reader of the whole text would see first).
  size_t cut = std::string::npos;
  for (const std::string& s : stop_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    std::string out = held_.substr(0, cut);
    held_.clear();
    stopped_ = true;
    return out;
  }
  // Keep back the longest suffix of held_ that is a proper prefix of some stop string. A stop string starts
  // on a UTF-8 lead byte, so such a suffix never splits a character.
  size_t keep = 0;
  for (const std::string& s : stop_) {
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k) {
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

}  // namespace tessera::coordinator::stream
