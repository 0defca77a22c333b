// coordinator/stream/sequence_text.h — one generated sequence's text, released as it becomes final.
//
// In: the sequence's sampled token ids, one at a time. Out: text deltas that never end in half a UTF-8
// character (IncrementalDecoder) and never hold a prefix of a stop string that later tokens might complete:
// stop strings are matched on the detokenized text, so one that spans token boundaries is found, and neither
// it nor anything after it is ever released (OpenAI semantics: the stop string is not in the output).
// Special tokens (<|im_end|>, eos) decode to nothing. Without a tokenizer every delta is "".
// Not thread-safe: one per sequence, driven by the scheduler thread through the request's sink.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/tokenizer/tokenizer.h"

namespace tessera::coordinator::stream {

class SequenceText {
 public:
  // `tokenizer` may be null (a model without one: token ids only); it must outlive this object. Stop strings
  // are not looked for in the text of the first `min_tokens` tokens (vLLM's min_tokens: nothing ends the
  // sequence before them); that text is released as it is, and a later match is looked for after it.
  SequenceText(const tokenizer::Tokenizer* tokenizer, std::vector<std::string> stop, int32_t min_tokens = 0);

  // The text that is final after `token`. After a stop string matched, returns "" for every later token.
  std::string push(int32_t token);
  // At the end of the sequence: the held-back text (up to a stop string, if one matches in it).
  std::string finish();
  bool stopped() const { return stopped_; }  // a stop string matched
  // Tokens pushed up to and including the one that completed the stop string (all of them otherwise).
  int32_t n_tokens() const { return n_tokens_; }

 private:
  std::string release();  // cut held_ at a stop string, or keep back the longest suffix that may start one

  std::optional<tokenizer::IncrementalDecoder> decoder_;
  std::vector<std::string> stop_;
  std::string held_;
  bool stopped_ = false;
  int32_t n_tokens_ = 0;
  int32_t min_tokens_ = 0;
};

}  // namespace tessera::coordinator::stream
