// coordinator/tokenizer/load_json.cpp — Tokenizer::from_tokenizer_json: a Hugging Face tokenizer.json.
//
// Supported: model BPE (vocab; merges as "a b" strings or [a, b] pairs; unk_token; ignore_merges), added_tokens,
// normalizer null, pre_tokenizer ByteLevel / Split / Digits / Sequence of those, decoder ByteLevel,
// post_processor ByteLevel / TemplateProcessing / Sequence (only to learn whether BOS/EOS are added).
// Model WordPiece (vocab, unk_token, continuing_subword_prefix, max_input_chars_per_word) with normalizer
// BertNormalizer or null, pre_tokenizer BertPreTokenizer, decoder WordPiece, post_processor TemplateProcessing or
// BertProcessing ([CLS] ... [SEP]) and truncation.max_length.
// tokenizer_config.json beside it (optional) gives bos_token, eos_token, add_bos_token, add_eos_token and
// chat_template. Anything else is a tessera::Error naming the file and the key.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/tokenizer_data.h"

namespace tessera::tokenizer {
namespace {

using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number past double's range
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

// Typed access that names the file and the key path in every error.
class Node {
 public:
  Node(const json& j, std::string file, std::string key) : j_(j), file_(std::move(file)), key_(std::move(key)) {}
  const json& raw() const { return j_; }
  const std::string& key() const { return key_; }
  [[noreturn]] void fail(const std::string& what) const { throw Error(file_ + ": key '" + key_ + "': " + what); }
  bool has(const std::string& k) const { return j_.is_object() && j_.contains(k) && !j_.at(k).is_null(); }
  Node at(const std::string& k) const {
    if (!j_.is_object()) fail("expected an object");
    if (!j_.contains(k)) throw Error(file_ + ": missing key '" + sub(k) + "'");
    return Node(j_.at(k), file_, sub(k));
  }
  Node at(size_t i) const { return Node(j_.at(i), file_, key_ + "[" + std::to_string(i) + "]"); }
  std::string str() const {
    if (!j_.is_string()) fail("expected a string");
    return j_.get<std::string>();
  }
  int64_t integer() const {
    if (!j_.is_number_integer()) fail("expected an integer");
    return j_.get<int64_t>();
  }
  bool boolean() const {
    if (!j_.is_boolean()) fail("expected true or false");
    return j_.get<bool>();
  }
  bool opt_bool(const std::string& k, bool def) const { return has(k) ? at(k).boolean() : def; }
  const json& array() const {
    if (!j_.is_array()) fail("expected an array");
    return j_;
  }
  const json& object() const {
    if (!j_.is_object()) fail("expected an object");
    return j_;
  }

 private:
  std::string sub(const std::string& k) const { return key_.empty() ? k : key_ + "." + k; }
  const json& j_;
  std::string file_, key_;
};

SplitBehavior parse_behavior(const Node& n) {
  const std::string b = n.str();
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  n.fail("unknown split behavior '" + b + "'");
}

void add_pre_tokenizer(const Node& n, PreTokenizer& p, const std::string& file) {
  const std::string type = n.at("type").str();
  if (type == "Sequence") {
    const Node list = n.at("pretokenizers");
    for (size_t i = 0; i < list.array().size(); ++i) add_pre_tokenizer(list.at(i), p, file);
  } else if (type == "ByteLevel") {
    p.add_byte_level(n.opt_bool("add_prefix_space", true), n.opt_bool("use_regex", true));
  } else if (type == "Digits") {
    p.add_digits(n.opt_bool("individual_digits", false));
  } else if (type == "Split") {
    const Node pattern = n.at("pattern");
    std::string text;
    bool literal;
    if (pattern.has("Regex")) {
      text = pattern.at("Regex").str();
      literal = false;
    } else if (pattern.has("String")) {
      text = pattern.at("String").str();
      literal = true;
    } else {
      pattern.fail("expected {\"Regex\": ...} or {\"String\": ...}");
    }
    p.add_split(Regex(text, literal, file + ": key '" + pattern.key() + "'"), parse_behavior(n.at("behavior")),
                n.opt_bool("invert", false));
  } else {
    n.at("type").fail("unsupported pre-tokenizer '" + type + "' (supported: ByteLevel, Split, Digits, Sequence)");
  }
}

bool decoder_is_byte_level(const Node& n) {
  const std::string type = n.at("type").str();
  if (type == "ByteLevel") return true;
  if (type == "Sequence") {  // a Sequence holding only ByteLevel steps is the same thing
    const Node list = n.at("decoders");
    for (size_t i = 0; i < list.array().size(); ++i)
      if (!decoder_is_byte_level(list.at(i))) return false;
    return !list.array().empty();
  }
  return false;
}

// BOS/EOS insertion described by a post_processor: TemplateProcessing's "single" template.
void read_post_processor(const Node& n, int32_t& bos, bool& add_bos, int32_t& eos, bool& add_eos) {
  const std::string type = n.at("type").str();
  if (type == "Sequence") {
    const Node list = n.at("processors");
    for (size_t i = 0; i < list.array().size(); ++i) read_post_processor(list.at(i), bos, add_bos, eos, add_eos);
    return;
  }
  if (type == "BertProcessing") {  // {"cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}
    bos = static_cast<int32_t>(n.at("cls").at(1).integer());
    eos = static_cast<int32_t>(n.at("sep").at(1).integer());
    add_bos = add_eos = true;
    return;
  }
  if (type != "TemplateProcessing") return;  // ByteLevel and RobertaProcessing-free models: nothing is added
  const Node single = n.at("single");
  const Node specials = n.at("special_tokens");
  auto special_id = [&](const Node& item) -> int32_t {
    const std::string name = item.at("SpecialToken").at("id").str();
    const Node ids = specials.at(name).at("ids");
    if (ids.array().size() != 1) ids.fail("expected exactly one id");
    return static_cast<int32_t>(ids.at(0).integer());
  };
  const size_t count = single.array().size();
  if (count == 0) return;
  if (single.at(0).has("SpecialToken")) {
    bos = special_id(single.at(0));
    add_bos = true;
  }
  if (count > 1 && single.at(count - 1).has("SpecialToken")) {
    eos = special_id(single.at(count - 1));
    add_eos = true;
  }
}

// tokenizer_config.json's bos_token / eos_token: a string or {"content": ...}.
std::string config_token(const Node& cfg, const std::string& key) {
  if (!cfg.has(key)) return {};
  const Node t = cfg.at(key);
  if (t.raw().is_string()) return t.str();
  return t.at("content").str();
}

TokenMap read_vocab(const Node& vocab_node, const std::string& path) {
  TokenMap vocab;
  vocab.reserve(vocab_node.object().size());
  for (const auto& [tok, id] : vocab_node.object().items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocab)
      throw Error(path + ": key 'model.vocab." + tok + "': expected an integer id in [0, " + std::to_string(kMaxVocab) +
                  ")");
    vocab.emplace(tok, static_cast<int32_t>(id.get<int64_t>()));
  }
  return vocab;
}

// Byte-level BPE: no normalizer, a pre_tokenizer ending in ByteLevel, the ByteLevel decoder.
void read_bpe_pipeline(const Node& root, TokenizerData& d) {
  const std::string& path = d.source;
  if (root.has("normalizer")) {
    const Node norm = root.at("normalizer");
    const bool empty_sequence = norm.at("type").str() == "Sequence" && norm.at("normalizers").array().empty();
    if (!empty_sequence) norm.at("type").fail("unsupported normalizer '" + norm.at("type").str() + "'");
  }
  if (!root.has("pre_tokenizer")) throw Error(path + ": missing key 'pre_tokenizer' (byte-level BPE needs ByteLevel)");
  add_pre_tokenizer(root.at("pre_tokenizer"), d.pre_tokenizer, path);
  if (!d.pre_tokenizer.has_byte_level())
    root.at("pre_tokenizer").fail("no ByteLevel step: only byte-level BPE is supported");
  if (!d.pre_tokenizer.byte_level_is_last())
    root.at("pre_tokenizer").fail("ByteLevel must be the last pre-tokenizer step");
  if (!root.has("decoder")) throw Error(path + ": missing key 'decoder'");
  if (!decoder_is_byte_level(root.at("decoder")))
    root.at("decoder").fail("unsupported decoder (tessera supports ByteLevel)");
}

// WordPiece (BERT family): the model, BertNormalizer (or none), BertPreTokenizer, the WordPiece decoder and the
// truncation length.
void read_wordpiece(const Node& root, const Node& model, TokenMap vocab, TokenizerData& d) {
  const std::string& path = d.source;
  const std::string prefix =
      model.has("continuing_subword_prefix") ? model.at("continuing_subword_prefix").str() : "##";
  int64_t max_chars = 100;
  if (model.has("max_input_chars_per_word")) {
    max_chars = model.at("max_input_chars_per_word").integer();
    if (max_chars < 0) model.at("max_input_chars_per_word").fail("expected a non-negative integer");
  }
  const std::string unk = model.has("unk_token") ? model.at("unk_token").str() : "[UNK]";
  d.wordpiece = std::make_unique<WordPieceModel>(std::move(vocab), unk, prefix, static_cast<size_t>(max_chars), path);

  if (root.has("normalizer")) {
    const Node norm = root.at("normalizer");
    if (norm.at("type").str() != "BertNormalizer")
      norm.at("type").fail("unsupported normalizer '" + norm.at("type").str() + "' for WordPiece (BertNormalizer)");
    d.bert_normalizer = true;
    BertNormalizerOptions& o = d.bert_options;
    o.clean_text = norm.opt_bool("clean_text", true);
    o.handle_chinese_chars = norm.opt_bool("handle_chinese_chars", true);
    o.lowercase = norm.opt_bool("lowercase", true);
    o.strip_accents = norm.opt_bool("strip_accents", o.lowercase);  // null: follow lowercase
  }
  if (!root.has("pre_tokenizer"))
    throw Error(path + ": missing key 'pre_tokenizer' (WordPiece needs BertPreTokenizer)");
  const Node pre = root.at("pre_tokenizer");
  if (pre.at("type").str() != "BertPreTokenizer")
    pre.at("type").fail("unsupported pre-tokenizer '" + pre.at("type").str() + "' for WordPiece (BertPreTokenizer)");
  if (root.has("decoder")) {
    const Node dec = root.at("decoder");
    if (dec.at("type").str() != "WordPiece")
      dec.at("type").fail("unsupported decoder '" + dec.at("type").str() + "' for WordPiece (WordPiece)");
    if (dec.has("prefix") && dec.at("prefix").str() != prefix)
      dec.at("prefix").fail("differs from model.continuing_subword_prefix");
    d.wordpiece_cleanup = dec.opt_bool("cleanup", true);
  }
  if (root.has("truncation")) {
    const Node t = root.at("truncation");
    if (t.has("direction") && t.at("direction").str() != "Right")
      t.at("direction").fail("only right-side truncation is supported");
    const int64_t n = t.at("max_length").integer();
    if (n <= 0 || n > kMaxVocab) t.at("max_length").fail("expected a positive length");
    d.max_length = static_cast<int32_t>(n);
  }
}

}  // namespace

Tokenizer Tokenizer::from_tokenizer_json(const std::string& path) {
  const json doc = read_json(path);
  const Node root(doc, path, "");
  auto d = std::make_unique<TokenizerData>();
  d->source = path;

  const Node model = root.at("model");
  const std::string model_type = model.has("type") ? model.at("type").str() : "BPE";
  if (model_type != "BPE" && model_type != "WordPiece")
    model.at("type").fail("unsupported model type '" + model_type + "' (tessera supports BPE and WordPiece)");
  TokenMap vocab = read_vocab(model.at("vocab"), path);
  if (model_type == "WordPiece") {
    read_wordpiece(root, model, std::move(vocab), *d);
  } else {
    if (model.has("dropout")) {
      const Node dropout = model.at("dropout");
      if (!dropout.raw().is_number()) dropout.fail("expected a number or null");
      if (dropout.raw().get<double>() != 0.0) dropout.fail("BPE dropout is not supported");
    }
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.has(k) && !model.at(k).str().empty()) model.at(k).fail("not supported for byte-level BPE");
    }

    std::vector<std::pair<std::string, std::string>> merges;
    const Node merges_node = model.at("merges");
    merges.reserve(merges_node.array().size());
    for (size_t i = 0; i < merges_node.array().size(); ++i) {
      const Node m = merges_node.at(i);
      if (m.raw().is_string()) {  // "a b" (tokenizers < 0.20)
        const std::string s = m.str();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) m.fail("expected \"left right\"");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.raw().is_array() && m.raw().size() == 2) {  // ["a", "b"]
        merges.emplace_back(m.at(0).str(), m.at(1).str());
      } else {
        m.fail("expected \"left right\" or [left, right]");
      }
    }

    int32_t unk_id = -1;
    if (model.has("unk_token")) {
      const auto it = vocab.find(model.at("unk_token").str());
      if (it == vocab.end()) model.at("unk_token").fail("not in the vocabulary");
      unk_id = it->second;
    }
    d->bpe = std::make_unique<BpeModel>(std::move(vocab), merges, unk_id, model.opt_bool("ignore_merges", false), path);
  }

  std::vector<AddedToken> added;
  if (root.has("added_tokens")) {
    const Node list = root.at("added_tokens");
    for (size_t i = 0; i < list.array().size(); ++i) {
      const Node t = list.at(i);
      AddedToken a;
      const int64_t id = t.at("id").integer();
      if (id < 0 || id >= kMaxVocab) t.at("id").fail("expected an id in [0, " + std::to_string(kMaxVocab) + ")");
      a.id = static_cast<int32_t>(id);
      a.content = t.at("content").str();
      a.special = t.opt_bool("special", false);
      a.single_word = t.opt_bool("single_word", false);
      a.lstrip = t.opt_bool("lstrip", false);
      a.rstrip = t.opt_bool("rstrip", false);
      added.push_back(std::move(a));
    }
  }
  d->added = AddedTokens(std::move(added));

  if (d->bpe) read_bpe_pipeline(root, *d);
  if (root.has("post_processor"))
    read_post_processor(root.at("post_processor"), d->bos_id, d->add_bos, d->eos_id, d->add_eos);

  const auto config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::string chat_template;
  if (std::filesystem::exists(config_path)) {
    const std::string cpath = config_path.string();
    const json cdoc = read_json(cpath);
    const Node cfg(cdoc, cpath, "");
    auto lookup = [&](const std::string& key) -> int32_t {
      const std::string tok = config_token(cfg, key);
      if (tok.empty()) return -1;
      for (const auto& a : d->added.tokens())
        if (a.content == tok) return a.id;
      const int32_t id = d->bpe ? d->bpe->find(tok) : d->wordpiece->find(tok);
      if (id < 0) cfg.at(key).fail("token '" + tok + "' is not in the vocabulary");
      return id;
    };
    if (const int32_t id = lookup("bos_token"); id >= 0) d->bos_id = id;
    if (const int32_t id = lookup("eos_token"); id >= 0) d->eos_id = id;
    d->add_bos = cfg.opt_bool("add_bos_token", d->add_bos);
    d->add_eos = cfg.opt_bool("add_eos_token", d->add_eos);
    // transformers writes a huge sentinel (1e30) when a model names no length: only a real one counts.
    if (d->wordpiece && d->max_length == 0 && cfg.has("model_max_length") &&
        cfg.at("model_max_length").raw().is_number()) {
      const double n = cfg.at("model_max_length").raw().get<double>();
      if (n >= 1 && n <= 1 << 20) d->max_length = static_cast<int32_t>(n);
    }
    if (cfg.has("chat_template")) {
      const Node t = cfg.at("chat_template");
      if (t.raw().is_string()) {
        chat_template = t.str();
      } else {  // [{"name": "default", "template": ...}, ...]
        for (size_t i = 0; i < t.array().size(); ++i)
          if (t.at(i).at("name").str() == "default") chat_template = t.at(i).at("template").str();
      }
    }
    d->chat_template = ChatTemplate(chat_template, cpath + ": key 'chat_template'");
  } else {
    d->chat_template = ChatTemplate("", path + " (no tokenizer_config.json beside it)");
  }
  return Tokenizer(finish_tokenizer(std::move(d)));
}

}  // namespace tessera::tokenizer
