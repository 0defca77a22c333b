// coordinator/tokenizer/load_gguf.cpp — Tokenizer::from_gguf (GGUF metadata) and from_model_path.
//
// GGUF keys read: tokenizer.ggml.model (must be "gpt2": byte-level BPE), tokenizer.ggml.pre (llama.cpp's
// pre-tokenizer name; "default" when absent, as llama.cpp does), tokenizer.ggml.tokens, tokenizer.ggml.merges,
// tokenizer.ggml.token_type (3 = control → special added token, 4 = user-defined → non-special added token),
// tokenizer.ggml.{bos,eos}_token_id, tokenizer.ggml.add_{bos,eos}_token, tokenizer.chat_template.
// The result is the tokenizer Hugging Face's tokenizer.json for the same model describes.
#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/tokenizer_data.h"
#include "formats/gguf.h"

namespace tessera::tokenizer {
namespace {

constexpr int64_t kTokenTypeControl = 3;
constexpr int64_t kTokenTypeUserDefined = 4;

}  // namespace

Tokenizer Tokenizer::from_gguf(const formats::GgufFile& gguf) {
  const std::string& path = gguf.path();
  auto key_error = [&](const std::string& key, const std::string& what) -> Error {
    return Error(path + ": key '" + key + "': " + what);
  };
  auto d = std::make_unique<TokenizerData>();
  d->source = path;

  const std::string type = gguf.get_string("tokenizer.ggml.model");
  if (type != "gpt2")
    throw key_error("tokenizer.ggml.model",
                    "unsupported tokenizer '" + type + "' (tessera supports byte-level BPE, 'gpt2')");
  const std::string pre = gguf.has_key("tokenizer.ggml.pre") ? gguf.get_string("tokenizer.ggml.pre") : "default";
  auto pre_tokenizer = PreTokenizer::from_gguf_name(pre);
  if (!pre_tokenizer)
    throw key_error("tokenizer.ggml.pre",
                    "unsupported pre-tokenizer '" + pre +
                        "' (supported: default, gpt-2, smollm, starcoder, refact, llama-bpe, qwen2)");
  d->pre_tokenizer = std::move(*pre_tokenizer);

  const std::vector<std::string> tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  if (static_cast<int64_t>(tokens.size()) > kMaxVocab)
    throw key_error("tokenizer.ggml.tokens", std::to_string(tokens.size()) + " tokens, more than " +
                                                 std::to_string(kMaxVocab) + " are not supported");
  std::vector<int64_t> types;
  if (gguf.has_key("tokenizer.ggml.token_type")) {
    types = gguf.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != tokens.size())
      throw key_error("tokenizer.ggml.token_type",
                      std::to_string(types.size()) + " entries for " + std::to_string(tokens.size()) + " tokens");
  }
  TokenMap vocab;
  vocab.reserve(tokens.size());
  std::vector<AddedToken> added;
  for (size_t i = 0; i < tokens.size(); ++i) {
    // the first occurrence wins when a string repeats (HF builds the vocab dict the same way, last wins
    // there, but GGUF files written from HF vocabularies have no duplicates)
    vocab.try_emplace(tokens[i], static_cast<int32_t>(i));
    const int64_t t = types.empty() ? 1 : types[i];
    if (t == kTokenTypeControl || t == kTokenTypeUserDefined) {
      AddedToken a;
      a.content = tokens[i];
      a.id = static_cast<int32_t>(i);
      a.special = t == kTokenTypeControl;
      added.push_back(std::move(a));
    }
  }
  d->added = AddedTokens(std::move(added));

  std::vector<std::pair<std::string, std::string>> merges;
  const std::vector<std::string> merge_lines = gguf.get_string_array("tokenizer.ggml.merges");
  merges.reserve(merge_lines.size());
  for (size_t i = 0; i < merge_lines.size(); ++i) {
    const std::string& m = merge_lines[i];
    const size_t sp = m.find(' ', 1);  // as llama.cpp: a token may itself start with a space
    if (sp == std::string::npos)
      throw key_error("tokenizer.ggml.merges", "entry " + std::to_string(i) + " '" + m + "' is not \"left right\"");
    merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  // Llama-3's tokenizer.json sets ignore_merges (a word that is a whole token is not merged); llama.cpp does
  // the same for this pre-tokenizer.
  const bool ignore_merges = pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3";
  d->bpe = std::make_unique<BpeModel>(std::move(vocab), merges, /*unk_id=*/-1, ignore_merges,
                                      path + ": key 'tokenizer.ggml.merges'");

  auto read_id = [&](const std::string& key) -> int32_t {
    if (!gguf.has_key(key)) return -1;
    const int64_t id = gguf.get_int(key);
    if (id < 0 || id >= static_cast<int64_t>(tokens.size()))
      throw key_error(key, "token id " + std::to_string(id) + " is outside the vocabulary");
    return static_cast<int32_t>(id);
  };
  d->bos_id = read_id("tokenizer.ggml.bos_token_id");
  d->eos_id = read_id("tokenizer.ggml.eos_token_id");
  d->add_bos = gguf.has_key("tokenizer.ggml.add_bos_token") && gguf.get_bool("tokenizer.ggml.add_bos_token");
  d->add_eos = gguf.has_key("tokenizer.ggml.add_eos_token") && gguf.get_bool("tokenizer.ggml.add_eos_token");
  const std::string tmpl = gguf.has_key("tokenizer.chat_template") ? gguf.get_string("tokenizer.chat_template") : "";
  d->chat_template = ChatTemplate(tmpl, path + ": key 'tokenizer.chat_template'");
  return Tokenizer(finish_tokenizer(std::move(d)));
}

Tokenizer Tokenizer::from_model_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path json = fs::path(path) / "tokenizer.json";
    if (!fs::exists(json, ec)) throw Error(path + ": no tokenizer.json in this directory");
    return from_tokenizer_json(json.string());
  }
  if (!fs::exists(path, ec)) throw Error(path + ": no such file or directory");
  char magic[4] = {};
  std::ifstream(path, std::ios::binary).read(magic, 4);
  if (std::string_view(magic, 4) == "GGUF") {
    const auto gguf = formats::GgufFile::open(path);
    return from_gguf(*gguf);
  }
  if (fs::path(path).extension() == ".json") return from_tokenizer_json(path);
  throw Error(path + ": not a GGUF file (bad magic), not a tokenizer .json and not a Hugging Face model directory");
}

}  // namespace tessera::tokenizer
