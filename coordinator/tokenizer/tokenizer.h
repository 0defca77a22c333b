// coordinator/tokenizer/tokenizer.h — text ⇄ token ids for byte-level BPE models (GPT-2, SmolLM2, Llama-3) and
// WordPiece encoders (BERT, DistilBERT, MiniLM).
//
// In:  a Hugging Face tokenizer.json (+ tokenizer_config.json beside it) or the tokenizer.* keys of a GGUF file.
// Out: token ids that are identical to Hugging Face `tokenizers` for the same model, text from ids, and the
//      prompt a chat model expects (its chat template).
// Guarantees:
//  - encode(): added tokens are matched first (leftmost, longest first; special ones only when parse_special),
//    the rest goes through the pre-tokenizer (PCRE2 regexes, UTF-8 + UCP) and BPE merges by rank.
//    WordPiece models instead normalize (BertNormalizer), split (BertPreTokenizer) and match WordPiece
//    (wordpiece.h); [CLS] ... [SEP] are the "BOS"/"EOS" of their post-processor.
//    Input must be valid UTF-8 (tessera::Error otherwise: the api layer turns that into a 400).
//  - BPE: decode(encode(s)) == s for every valid UTF-8 s; invalid byte sequences produced by arbitrary ids become
//    U+FFFD per maximal subpart, exactly like Rust's String::from_utf8_lossy (what HF does).
//  - A bad file is a tessera::Error whose message names the file and the key.
// Thread-safety: a Tokenizer is immutable after load; every const method may be called concurrently from any
// number of threads (the internal word cache is guarded). Copies share the loaded tables.
// IncrementalDecoder is NOT thread-safe: one per stream.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::formats {
class GgufFile;
}

namespace tessera::tokenizer {

struct ChatMessage {
  std::string role, content;
};

struct TokenizerData;  // the loaded tables (tokenizer_impl.h)

class Tokenizer {
 public:
  // tokenizer.json (model.type "BPE" with a ByteLevel decoder, or "WordPiece" with BertNormalizer,
  // BertPreTokenizer and a WordPiece decoder); tokenizer_config.json in the same directory, when
  // present, supplies bos/eos tokens, add_bos_token and chat_template.
  static Tokenizer from_tokenizer_json(const std::string& path);
  // GGUF metadata: tokenizer.ggml.model "gpt2" with a known tokenizer.ggml.pre.
  static Tokenizer from_gguf(const formats::GgufFile& gguf);
  // A .gguf file, a tokenizer.json file, or a Hugging Face directory holding tokenizer.json.
  static Tokenizer from_model_path(const std::string& path);

  // add_special: prepend BOS (and append EOS) where the model asks for it.
  // parse_special: text such as "<|im_end|>" becomes the special token; otherwise it is encoded as plain text.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false, bool parse_special = true) const;
  // encode() cut to max_length ids, the added specials included (HF's right-side truncation: the text's ids
  // are cut to max_length minus the specials, then the specials are added; a max_length below the number of
  // specials leaves only the specials, where HF refuses). max_length <= 0: no cut.
  std::vector<int32_t> encode_truncated(std::string_view text, int32_t max_length, bool add_special = true,
                                        bool parse_special = true) const;
  // The truncation length the tokenizer asks for (tokenizer.json's truncation.max_length, else
  // tokenizer_config.json's model_max_length when it is a real length); 0 when it names none.
  int32_t max_length() const;
  // WordPiece: HF's WordPiece decoder (tokens joined by spaces, "##" continuations glued, cleanup).
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw bytes a token stands for (may be part of a UTF-8 sequence). Throws tessera::Error for a bad id.
  std::string token_bytes(int32_t id) const;
  // The token's text as stored in the vocabulary (byte-level form, e.g. "Ġthe"); -1 / "" when unknown.
  std::string id_to_token(int32_t id) const;
  int32_t token_to_id(std::string_view token) const;
  bool is_special(int32_t id) const;

  int32_t vocab_size() const;
  int32_t bos_id() const;  // -1 if none
  int32_t eos_id() const;  // -1 if none
  bool add_bos() const;
  // EOS plus end-of-turn tokens such as <|im_end|>, <|endoftext|>, <|eot_id|> (sorted, unique).
  std::vector<int32_t> stop_ids() const;
  // Renders the model's chat template (ChatML family). Throws tessera::Error when the model has none or
  // uses one this renderer does not implement.
  std::string apply_chat_template(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const;
  const std::string& chat_template() const;  // the raw Jinja source ("" if none)

  explicit Tokenizer(std::shared_ptr<const TokenizerData> data);

 private:
  friend class IncrementalDecoder;  // WordPiece streams per token through the model's decoder rules
  std::shared_ptr<const TokenizerData> data_;
};

// Streaming detokenizer: push() returns only complete UTF-8 text and holds back a trailing incomplete
// sequence; bytes that can never become valid are emitted as U+FFFD right away. WordPiece tokens are whole
// UTF-8 text, so they stream one decoder step (space or "##" glue, cleanup) per token. The concatenation of every
// push() and the final flush() equals Tokenizer::decode() of the whole id sequence.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();  // the held-back bytes (as U+FFFD) and a reset

 private:
  Tokenizer tokenizer_;
  bool skip_special_;
  std::string pending_;
  bool first_ = true;  // WordPiece: the next token is the first one emitted (no space, no "##" glue)
};

}  // namespace tessera::tokenizer
