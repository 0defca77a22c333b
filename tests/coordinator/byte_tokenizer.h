// tests/coordinator/byte_tokenizer.h — a tokenizer the coordinator tests write themselves: byte-level BPE with the
// 256 byte tokens as ids 0-255 and no merges (every byte is one token), plus the given special tokens, and, when a
// chat template is given, a tokenizer_config.json holding it and the EOS token. Written to a temporary directory,
// loaded through Tokenizer::from_model_path (the real loader), removed.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/tokenizer/byte_level.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace tessera::coordinator::test_support {

inline tokenizer::Tokenizer make_byte_tokenizer(const std::string& tag,
                                                const std::vector<std::pair<int32_t, std::string>>& specials,
                                                const std::string& eos = "", const std::string& chat_template = "") {
  using nlohmann::json;
  namespace fs = std::filesystem;
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[tokenizer::byte_level::to_unicode(std::string(1, static_cast<char>(b)))] = b;
  json added = json::array();
  for (const auto& [id, content] : specials)
    added.push_back({{"id", id},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  const json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  const json j = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"vocab", vocab}, {"merges", json::array()}}},
  };
  const fs::path dir = fs::temp_directory_path() / ("tessera_" + tag + "_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json", std::ios::binary) << j.dump();
  if (!chat_template.empty()) {
    const json config = {{"eos_token", eos}, {"add_bos_token", false}, {"chat_template", chat_template}};
    std::ofstream(dir / "tokenizer_config.json", std::ios::binary) << config.dump();
  }
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_model_path(dir.string());
  fs::remove_all(dir);
  return tok;
}

}  // namespace tessera::coordinator::test_support
