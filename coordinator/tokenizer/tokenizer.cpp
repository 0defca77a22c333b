// coordinator/tokenizer/tokenizer.cpp — encode / decode / streaming decode over the loaded tables.
#include "coordinator/tokenizer/tokenizer.h"

#include <algorithm>
#include <deque>

#include "common/check.h"
#include "coordinator/tokenizer/byte_level.h"
#include "coordinator/tokenizer/tokenizer_data.h"
#include "coordinator/tokenizer/utf8.h"

namespace tessera::tokenizer {

std::shared_ptr<const TokenizerData> finish_tokenizer(std::unique_ptr<TokenizerData> d) {
  TESSERA_CHECK((d->bpe != nullptr) != (d->wordpiece != nullptr));
  const TokenMap& vocab = d->bpe ? d->bpe->vocab() : d->wordpiece->vocab();
  int32_t n = 0;
  for (const auto& [tok, id] : vocab) {
    if (id < 0) throw Error(d->source + ": negative token id " + std::to_string(id) + " for '" + tok + "'");
    n = std::max(n, id + 1);
  }
  for (const auto& t : d->added.tokens()) n = std::max(n, t.id + 1);
  d->vocab_size = n;
  d->id_to_token.assign(n, "");
  d->id_to_bytes.assign(n, "");
  d->special.assign(n, 0);
  for (const auto& [tok, id] : vocab) d->id_to_token[id] = tok;
  for (const auto& t : d->added.tokens()) {
    if (t.id < 0) throw Error(d->source + ": added token '" + t.content + "' has a negative id");
    d->id_to_token[t.id] = t.content;
    d->special[t.id] = t.special ? 1 : 0;
  }
  // HF's ByteLevel decoder: a token whose characters are all in the byte alphabet stands for those bytes;
  // any other token (e.g. an added token with a space in it) stands for its own UTF-8 text.
  // A WordPiece token stands for its own text (token_bytes; decode() joins tokens its own way).
  for (int32_t id = 0; id < n; ++id) {
    if (d->wordpiece || !byte_level::to_bytes(d->id_to_token[id], d->id_to_bytes[id]))
      d->id_to_bytes[id] = d->id_to_token[id];
  }
  for (const char* name : {"bos", "eos"}) {
    const int32_t id = name[0] == 'b' ? d->bos_id : d->eos_id;
    if (id >= n)
      throw Error(d->source + ": " + name + " token id " + std::to_string(id) + " is outside the vocabulary");
  }
  if (d->add_bos && d->bos_id < 0) throw Error(d->source + ": the tokenizer adds a BOS token but defines none");
  if (d->add_eos && d->eos_id < 0) throw Error(d->source + ": the tokenizer adds an EOS token but defines none");
  // End of generation: EOS and the end-of-turn markers chat models emit instead of (or besides) it.
  if (d->eos_id >= 0) d->stop_ids.push_back(d->eos_id);
  for (const auto& t : d->added.tokens()) {
    static constexpr std::string_view kEndOfTurn[] = {"<|im_end|>",      "<|endoftext|>", "<|eot_id|>", "<|eom_id|>",
                                                      "<|end_of_text|>", "<end_of_turn>", "<|end|>"};
    if (t.special && std::find(std::begin(kEndOfTurn), std::end(kEndOfTurn), t.content) != std::end(kEndOfTurn))
      d->stop_ids.push_back(t.id);
  }
  std::sort(d->stop_ids.begin(), d->stop_ids.end());
  d->stop_ids.erase(std::unique(d->stop_ids.begin(), d->stop_ids.end()), d->stop_ids.end());
  return std::shared_ptr<const TokenizerData>(std::move(d));
}

Tokenizer::Tokenizer(std::shared_ptr<const TokenizerData> data) : data_(std::move(data)) { TESSERA_CHECK(data_); }

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const size_t bad = utf8::first_invalid(text);
  if (bad != text.size()) throw Error("tokenizer: input text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  const TokenizerData& d = *data_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special && d.add_bos) ids.push_back(d.bos_id);
  std::vector<TextPiece> pieces;
  if (d.added.empty())
    pieces.push_back({text, -1});
  else
    d.added.split(text, parse_special, pieces);
  std::vector<std::string_view> words;
  std::deque<std::string> owned;
  for (const TextPiece& p : pieces) {
    if (p.id >= 0) {
      ids.push_back(p.id);
      continue;
    }
    words.clear();
    if (d.wordpiece) {
      owned.push_back(d.bert_normalizer ? bert_normalize(p.text, d.bert_options) : std::string(p.text));
      bert_pre_tokenize(owned.back(), words);
      for (std::string_view w : words) d.wordpiece->encode_word(w, ids);
      continue;
    }
    d.pre_tokenizer.split(p.text, words, owned);
    for (std::string_view w : words) d.bpe->encode_word(w, ids);
  }
  if (add_special && d.add_eos) ids.push_back(d.eos_id);
  return ids;
}

std::vector<int32_t> Tokenizer::encode_truncated(std::string_view text, int32_t max_length, bool add_special,
                                                 bool parse_special) const {
  std::vector<int32_t> ids = encode(text, false, parse_special);
  const TokenizerData& d = *data_;
  const int32_t n_special = add_special ? int32_t{d.add_bos} + int32_t{d.add_eos} : 0;
  if (max_length > 0) ids.resize(std::min(ids.size(), size_t(std::max(0, max_length - n_special))));
  if (add_special && d.add_bos) ids.insert(ids.begin(), d.bos_id);
  if (add_special && d.add_eos) ids.push_back(d.eos_id);
  return ids;
}

int32_t Tokenizer::max_length() const { return data_->max_length; }

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= data_->vocab_size) throw Error("tokenizer: token id " + std::to_string(id) + " is out of range");
  return data_->id_to_bytes[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  if (data_->wordpiece) {
    std::vector<std::string> tokens;
    for (int32_t id : ids) {
      if (id < 0 || id >= data_->vocab_size)
        throw Error("tokenizer: token id " + std::to_string(id) + " is out of range");
      if (skip_special && data_->special[id]) continue;
      tokens.push_back(data_->id_to_token[id]);
    }
    return wordpiece_decode(tokens, data_->wordpiece->prefix(), data_->wordpiece_cleanup);
  }
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= data_->vocab_size)
      throw Error("tokenizer: token id " + std::to_string(id) + " is out of range");
    if (skip_special && data_->special[id]) continue;
    bytes += data_->id_to_bytes[id];
  }
  return utf8::lossy(bytes);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  return id >= 0 && id < data_->vocab_size ? data_->id_to_token[id] : std::string();
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  for (const auto& t : data_->added.tokens())
    if (t.content == token) return t.id;
  return data_->bpe ? data_->bpe->find(token) : data_->wordpiece->find(token);
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < data_->vocab_size && data_->special[id]; }
int32_t Tokenizer::vocab_size() const { return data_->vocab_size; }
int32_t Tokenizer::bos_id() const { return data_->bos_id; }
int32_t Tokenizer::eos_id() const { return data_->eos_id; }
bool Tokenizer::add_bos() const { return data_->add_bos; }
std::vector<int32_t> Tokenizer::stop_ids() const { return data_->stop_ids; }

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const {
  return data_->chat_template.render(msgs, add_generation_prompt);
}

const std::string& Tokenizer::chat_template() const { return data_->chat_template.jinja(); }

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string IncrementalDecoder::push(int32_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  if (const TokenizerData& d = *tokenizer_.data_; d.wordpiece) {
    std::string out =
        wordpiece_decode_token(tokenizer_.token_bytes(id), first_, d.wordpiece->prefix(), d.wordpiece_cleanup);
    first_ = false;
    return out;
  }
  pending_ += tokenizer_.token_bytes(id);
  size_t held = 0;
  std::string out = utf8::lossy(pending_, /*hold_back_incomplete=*/true, &held);
  pending_.erase(0, pending_.size() - held);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out = utf8::lossy(pending_);
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace tessera::tokenizer
