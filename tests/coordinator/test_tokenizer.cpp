// tests/coordinator/test_tokenizer.cpp — the tokenizer on files the test writes itself (no model needed):
// a tiny tokenizer.json and a tiny GGUF, hand-computed ids, UTF-8 edge cases, streaming decode, and the errors
// a bad file gives (they must name the file and the key).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/check.h"
#include "coordinator/tokenizer/byte_level.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/utf8.h"
#include "formats/gguf.h"

namespace tessera::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("tessera_tok_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

// Byte b has id b; the byte-level character of a byte is its vocabulary string.
std::string ch(char c) { return byte_level::to_unicode(std::string(1, c)); }

// A tiny GPT-2 style tokenizer: 256 byte tokens, a few merges, added tokens.
//   ids: 0..255 bytes; 256 "he", 257 "ll", 258 "hell", 259 "hello", 260 "Ġw", 261 "or", 262 "Ġwor", 263 "aa",
//        264 "12"; added: 270 <|im_start|> (special), 271 <|im_end|> (special), 272 <user_tok> (not special),
//        273 <s> (special, BOS through TemplateProcessing).
json tiny_tokenizer_json(bool pair_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ch(static_cast<char>(b))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {ch(' '), "w"}, {"o", "r"}, {ch(' ') + "w", "or"},
      {"a", "a"}, {"1", "2"}};
  int next = 256;
  json m = json::array();
  for (const auto& [a, b] : merges) {
    vocab[a + b] = next++;
    if (pair_merges)
      m.push_back(json::array({a, b}));
    else
      m.push_back(a + " " + b);
  }
  json added = json::array();
  auto add = [&](int id, const std::string& content, bool special) {
    added.push_back({{"id", id},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", special}});
  };
  add(270, "<|im_start|>", true);
  add(271, "<|im_end|>", true);
  add(272, "<user_tok>", false);
  add(273, "<s>", true);
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Digits"}, {"individual_digits", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}})}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {273}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", m}}},
  };
}

const char* kChatMlTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
    "You are a test assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

Tokenizer load_tiny(bool pair_merges, bool with_config = true) {
  const fs::path dir = temp_dir(std::string("tiny") + (pair_merges ? "p" : "s") + (with_config ? "c" : ""));
  write_file(dir / "tokenizer.json", tiny_tokenizer_json(pair_merges).dump());
  if (with_config) {
    write_file(
        dir / "tokenizer_config.json",
        json({{"bos_token", "<s>"}, {"eos_token", {{"content", "<|im_end|>"}}}, {"chat_template", kChatMlTemplate}})
            .dump());
  }
  return Tokenizer::from_model_path(dir.string());
}

std::vector<int32_t> bytes_ids(std::string_view s) {
  std::vector<int32_t> ids;
  for (char c : s) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

TEST(TokenizerJson, EncodesWithMergesByRank) {
  for (bool pairs : {false, true}) {
    const Tokenizer tok = load_tiny(pairs);
    EXPECT_EQ(tok.encode("hello world"), (std::vector<int32_t>{259, 262, 'l', 'd'})) << "pair merges " << pairs;
    // equal-rank merges resolve leftmost first, as HF: "aaa" → [aa, a]
    EXPECT_EQ(tok.encode("aaa"), (std::vector<int32_t>{263, 'a'}));
    EXPECT_EQ(tok.encode("aaaa"), (std::vector<int32_t>{263, 263}));
    // Digits (runs, not individual) then the GPT-2 regex: " 123" → " " | "123" → "12" "3"
    EXPECT_EQ(tok.encode(" 123"), (std::vector<int32_t>{' ', 264, '3'}));
    EXPECT_EQ(tok.encode(""), std::vector<int32_t>{});
    // non-ASCII: every UTF-8 byte is its own token here
    EXPECT_EQ(tok.encode("é"), bytes_ids("é"));
  }
}

TEST(TokenizerJson, SpecialAndAddedTokens) {
  const Tokenizer tok = load_tiny(false);
  EXPECT_EQ(tok.vocab_size(), 274);
  EXPECT_EQ(tok.encode("<|im_start|>hello<|im_end|>"), (std::vector<int32_t>{270, 259, 271}));
  // parse_special = false: special tokens are plain text, non-special added tokens still match
  std::vector<int32_t> plain = bytes_ids("<|im_end|>");
  EXPECT_EQ(tok.encode("<|im_end|>", false, false), plain);
  EXPECT_EQ(tok.encode("<user_tok>", false, false), std::vector<int32_t>{272});
  EXPECT_EQ(tok.encode("a<user_tok>b"), (std::vector<int32_t>{'a', 272, 'b'}));
  // longest match first: "<|im_start|>" must not be read as "<" + ...
  EXPECT_EQ(tok.encode("<|im_start|><|im_start"),
            (std::vector<int32_t>{270, '<', '|', 'i', 'm', '_', 's', 't', 'a', 'r', 't'}));
  // BOS from the TemplateProcessing post-processor, ids from tokenizer_config.json
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.bos_id(), 273);
  EXPECT_EQ(tok.eos_id(), 271);
  EXPECT_EQ(tok.encode("hello", true), (std::vector<int32_t>{273, 259}));
  EXPECT_EQ(tok.stop_ids(), std::vector<int32_t>{271});
  EXPECT_TRUE(tok.is_special(270));
  EXPECT_FALSE(tok.is_special(272));
  EXPECT_EQ(tok.token_to_id("hello"), 259);
  EXPECT_EQ(tok.id_to_token(260), ch(' ') + "w");
}

TEST(TokenizerJson, DecodeRoundTripAndSkipSpecial) {
  const Tokenizer tok = load_tiny(true);
  for (const std::string& s :
       std::vector<std::string>{"hello world", "  multiple   spaces\n\n\ttabs", "日本語 😀 e\u0301",
                                "<|im_start|>x<|im_end|>", std::string("nul\0byte", 8), "12345 678"}) {
    EXPECT_EQ(tok.decode(tok.encode(s)), s);
  }
  const std::vector<int32_t> ids = tok.encode("<|im_start|>hello<|im_end|>");
  EXPECT_EQ(tok.decode(ids, true), "hello");
  EXPECT_EQ(tok.token_bytes(260), " w");
  EXPECT_EQ(tok.token_bytes(270), "<|im_start|>");
  EXPECT_THROW(tok.token_bytes(100000), Error);
  EXPECT_THROW(tok.decode(std::vector<int32_t>{-1}), Error);
}

TEST(TokenizerJson, ChatTemplateFromConfig) {
  const Tokenizer tok = load_tiny(false);
  EXPECT_EQ(tok.apply_chat_template({{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are a test assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(tok.apply_chat_template({{"system", "S"}, {"user", "U"}, {"assistant", "A"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n");
  EXPECT_EQ(tok.apply_chat_template({}, true), "<|im_start|>assistant\n");
  const Tokenizer bare = load_tiny(false, /*with_config=*/false);
  EXPECT_EQ(bare.bos_id(), 273);  // still known from the post-processor
  EXPECT_EQ(bare.eos_id(), -1);
  try {
    bare.apply_chat_template({{"user", "x"}}, true);
    FAIL() << "expected an error: no chat template";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no chat template"), std::string::npos) << e.what();
  }
}

TEST(TokenizerJson, RejectsInvalidUtf8Input) {
  const Tokenizer tok = load_tiny(false);
  EXPECT_THROW(tok.encode("abc\xff"), Error);
  EXPECT_THROW(tok.encode("\xed\xa0\x80"), Error);  // a UTF-16 surrogate
}

TEST(TokenizerJson, ConcurrentEncodeMatchesSerial) {
  const Tokenizer tok = load_tiny(true);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back("hello world " + std::to_string(i * 7919) + " aaa é" + std::string(i % 13, ' '));
  std::vector<std::vector<int32_t>> expect;
  for (const auto& t : texts) expect.push_back(tok.encode(t));
  std::vector<int> wrong(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const Tokenizer copy = tok;  // copies share the tables and the cache
      for (int rep = 0; rep < 20; ++rep)
        for (size_t i = 0; i < texts.size(); ++i)
          wrong[t] += copy.encode(texts[(i + t * 31) % texts.size()]) != expect[(i + t * 31) % texts.size()];
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(wrong[t], 0) << "thread " << t;
}

// --- UTF-8 and streaming ---------------------------------------------------------------------------

const std::string kFFFD = "\xEF\xBF\xBD";

TEST(Utf8, LossyFollowsMaximalSubparts) {
  EXPECT_EQ(utf8::lossy("abc"), "abc");
  EXPECT_EQ(utf8::lossy("\xE2\x82"), kFFFD);  // truncated 3-byte sequence: one
  EXPECT_EQ(utf8::lossy("\xE2\x82"
                        "a"),
            kFFFD + "a");
  EXPECT_EQ(utf8::lossy("\xF0\x80\x80"), kFFFD + kFFFD + kFFFD);              // F0 80: 80 is not a valid 2nd byte
  EXPECT_EQ(utf8::lossy("\xED\xA0\x80"), kFFFD + kFFFD + kFFFD);              // surrogates
  EXPECT_EQ(utf8::lossy("\xC0\xAF"), kFFFD + kFFFD);                          // overlong
  EXPECT_EQ(utf8::lossy("\x80\xBF"), kFFFD + kFFFD);                          // stray continuation bytes
  EXPECT_EQ(utf8::lossy("\xF4\x90\x80\x80"), kFFFD + kFFFD + kFFFD + kFFFD);  // > U+10FFFF
  EXPECT_EQ(utf8::lossy("\xF0\x9F\x98"), kFFFD);
  EXPECT_EQ(utf8::lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  size_t held = 0;
  EXPECT_EQ(utf8::lossy("a\xF0\x9F\x98", true, &held), "a");
  EXPECT_EQ(held, 3u);
}

TEST(IncrementalDecoder, HoldsBackIncompleteSequences) {
  const Tokenizer tok = load_tiny(false);
  IncrementalDecoder dec(tok);
  const std::string smile = "\xF0\x9F\x98\x80";  // one byte token each
  EXPECT_EQ(dec.push(0xF0), "");
  EXPECT_EQ(dec.push(0x9F), "");
  EXPECT_EQ(dec.push(0x98), "");
  EXPECT_EQ(dec.push(0x80), smile);
  EXPECT_EQ(dec.push(259), "hello");
  // a sequence that turns invalid is released at once as U+FFFD, then the new byte is judged on its own
  EXPECT_EQ(dec.push(0xE2), "");
  EXPECT_EQ(dec.push('x'), kFFFD + "x");
  EXPECT_EQ(dec.push(0xE2), "");
  EXPECT_EQ(dec.push(0x82), "");
  EXPECT_EQ(dec.flush(), kFFFD);
  EXPECT_EQ(dec.flush(), "");
  IncrementalDecoder skip(tok, /*skip_special=*/true);
  EXPECT_EQ(skip.push(270), "");
  EXPECT_EQ(skip.push(259), "hello");
}

TEST(IncrementalDecoder, ConcatenationEqualsDecodeOnRandomBytes) {
  const Tokenizer tok = load_tiny(false);
  uint64_t state = 12345;
  auto next = [&] { return state = state * 6364136223846793005ull + 1442695040888963407ull, uint32_t(state >> 33); };
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> ids(next() % 12);
    for (auto& id : ids) {  // mostly high bytes, to make many broken and complete sequences
      const uint32_t r = next() % 10;
      id = r < 7 ? int32_t(0x80 + next() % 0x78) : r < 9 ? int32_t(next() % 128) : int32_t(256 + next() % 18);
    }
    IncrementalDecoder dec(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = dec.push(id);
      ASSERT_TRUE(utf8::is_valid(piece));
      streamed += piece;
    }
    streamed += dec.flush();
    ASSERT_EQ(streamed, tok.decode(ids)) << "trial " << trial;
  }
}

// --- errors ----------------------------------------------------------------------------------------

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TokenizerErrors, NameTheFileAndKey) {
  const fs::path dir = temp_dir("errors");
  const std::string missing = (dir / "nope.json").string();
  EXPECT_NE(error_of([&] { Tokenizer::from_tokenizer_json(missing); }).find(missing), std::string::npos);
  EXPECT_NE(error_of([&] { Tokenizer::from_model_path(missing); }).find(missing), std::string::npos);
  EXPECT_NE(error_of([&] { Tokenizer::from_model_path(dir.string()); }).find("no tokenizer.json"), std::string::npos);

  const fs::path bad = dir / "bad.json";
  write_file(bad, "{\"model\": [1, 2");
  std::string msg = error_of([&] { Tokenizer::from_tokenizer_json(bad.string()); });
  EXPECT_NE(msg.find(bad.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;

  auto expect_error = [&](json j, const std::string& key, const std::string& why) {
    const fs::path p = dir / "tokenizer.json";
    write_file(p, j.dump());
    const std::string m = error_of([&] { Tokenizer::from_tokenizer_json(p.string()); });
    EXPECT_NE(m.find(p.string()), std::string::npos) << m;
    EXPECT_NE(m.find(key), std::string::npos) << "expected key " << key << " in: " << m;
    EXPECT_NE(m.find(why), std::string::npos) << "expected '" << why << "' in: " << m;
  };
  json j = tiny_tokenizer_json(false);
  j["model"].erase("merges");
  expect_error(j, "model.merges", "missing key");
  j = tiny_tokenizer_json(false);
  j["model"]["type"] = "Unigram";
  expect_error(j, "model.type", "unsupported model type");
  j = tiny_tokenizer_json(false);
  j["model"]["type"] = "WordPiece";  // supported, but this vocabulary has no [UNK]
  expect_error(j, "model.unk_token", "not in the vocabulary");
  j = tiny_tokenizer_json(false);
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect_error(j, "pre_tokenizer.type", "unsupported pre-tokenizer");
  j = tiny_tokenizer_json(false);
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j, "decoder", "unsupported decoder");
  j = tiny_tokenizer_json(false);
  j["model"]["merges"].push_back("zz qq");
  expect_error(j, "merge", "not in the vocabulary");
  j = tiny_tokenizer_json(false);
  j["model"]["merges"][0] = 7;
  expect_error(j, "model.merges[0]", "expected");
  j = tiny_tokenizer_json(false);
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(j, "pre_tokenizer.pattern", "cannot compile");
}

// --- GGUF ------------------------------------------------------------------------------------------

// Writes a GGUF v3 file with metadata only (no tensors).
class GgufWriter {
 public:
  void str(const std::string& key, const std::string& v) {
    kv(key, 8), s(v);
    ++n_;
  }
  void u32(const std::string& key, uint32_t v) {
    kv(key, 4), raw(v);
    ++n_;
  }
  void boolean(const std::string& key, bool v) {
    kv(key, 7), raw(uint8_t(v));
    ++n_;
  }
  void str_array(const std::string& key, const std::vector<std::string>& v) {
    kv(key, 9), raw(uint32_t(8)), raw(uint64_t(v.size()));
    for (const auto& x : v) s(x);
    ++n_;
  }
  void i32_array(const std::string& key, const std::vector<int32_t>& v) {
    kv(key, 9), raw(uint32_t(5)), raw(uint64_t(v.size()));
    for (int32_t x : v) raw(x);
    ++n_;
  }
  void write(const fs::path& p) const {
    std::string out = "GGUF";
    auto put = [&](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(uint32_t(3)), put(uint64_t(0)), put(uint64_t(n_));
    out += body_;
    while (out.size() % 32) out.push_back('\0');
    write_file(p, out);
  }

 private:
  template <typename T>
  void raw(T v) {
    body_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void s(const std::string& v) { raw(uint64_t(v.size())), body_ += v; }
  void kv(const std::string& key, uint32_t type) { s(key), raw(type); }
  std::string body_;
  uint64_t n_ = 0;
};

GgufWriter tiny_gguf(const std::string& model, const std::string& pre) {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) tokens.push_back(ch(static_cast<char>(b))), types.push_back(1);
  const std::vector<std::string> merges = {"h e", "l l", "he ll", "hell o"};
  for (const char* t : {"he", "ll", "hell", "hello", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool>"}) {
    tokens.push_back(t);
    types.push_back(tokens.size() <= 260 ? 1 : std::string(t) == "<tool>" ? 4 : 3);
  }
  GgufWriter w;
  w.str("general.architecture", "llama");
  w.str("tokenizer.ggml.model", model);
  w.str("tokenizer.ggml.pre", pre);
  w.str_array("tokenizer.ggml.tokens", tokens);
  w.i32_array("tokenizer.ggml.token_type", types);
  w.str_array("tokenizer.ggml.merges", merges);
  w.u32("tokenizer.ggml.bos_token_id", 260);
  w.u32("tokenizer.ggml.eos_token_id", 261);
  w.boolean("tokenizer.ggml.add_bos_token", true);
  w.str("tokenizer.chat_template", kChatMlTemplate);
  return w;
}

TEST(TokenizerGguf, LoadsMetadata) {
  const fs::path p = temp_dir("gguf") / "tiny.gguf";
  tiny_gguf("gpt2", "smollm").write(p);
  const Tokenizer tok = Tokenizer::from_model_path(p.string());
  EXPECT_EQ(tok.vocab_size(), 264);
  EXPECT_EQ(tok.bos_id(), 260);
  EXPECT_EQ(tok.eos_id(), 261);
  EXPECT_EQ(tok.stop_ids(), (std::vector<int32_t>{261, 262}));  // <|im_end|> and <|endoftext|>
  // smollm splits every digit; <tool> is user-defined: always matched, not special
  EXPECT_EQ(tok.encode("hello 12<|im_end|><tool>", true), (std::vector<int32_t>{260, 259, ' ', '1', '2', 261, 263}));
  EXPECT_EQ(tok.encode("<|im_end|><tool>", false, false).back(), 263);
  EXPECT_TRUE(tok.is_special(261));
  EXPECT_FALSE(tok.is_special(263));
  EXPECT_EQ(tok.decode(tok.encode("hello 12<|im_end|>"), true), "hello 12");
  EXPECT_EQ(tok.apply_chat_template({{"system", "s"}}, false), "<|im_start|>system\ns<|im_end|>\n");
}

TEST(TokenizerGguf, UnsupportedTokenizerNamesFileAndKey) {
  const fs::path dir = temp_dir("gguf_bad");
  const fs::path spm = dir / "spm.gguf";
  tiny_gguf("llama", "default").write(spm);
  std::string m = error_of([&] { Tokenizer::from_model_path(spm.string()); });
  EXPECT_NE(m.find(spm.string()), std::string::npos) << m;
  EXPECT_NE(m.find("tokenizer.ggml.model"), std::string::npos) << m;
  const fs::path pre = dir / "pre.gguf";
  tiny_gguf("gpt2", "jais-unknown").write(pre);
  m = error_of([&] { Tokenizer::from_model_path(pre.string()); });
  EXPECT_NE(m.find(pre.string()), std::string::npos) << m;
  EXPECT_NE(m.find("tokenizer.ggml.pre"), std::string::npos) << m;
  EXPECT_NE(m.find("jais-unknown"), std::string::npos) << m;
}

}  // namespace
}  // namespace tessera::tokenizer
