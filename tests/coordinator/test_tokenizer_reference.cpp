// tests/coordinator/test_tokenizer_reference.cpp — the tokenizer of the real default model (SmolLM2-135M-Instruct
// GGUF) against Hugging Face: ids for >= 1000 strings, decode of random id sequences, chat-template renderings
// (reference written by tests/python/tokenizer_reference.py), exact round trips, streaming decode, and speed.
//
// Environment: TESSERA_DEFAULT_MODEL (the .gguf) and TESSERA_TOKENIZER_REF (the reference JSON). A test whose
// input is missing skips and says which variable to set.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/utf8.h"

namespace tessera::tokenizer {
namespace {

using nlohmann::json;

std::string env_path(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v || !std::filesystem::exists(v)) return {};
  return v;
}

#define REQUIRE_ENV(var, name, why)       \
  const std::string var = env_path(name); \
  if (var.empty()) GTEST_SKIP() << name " is unset or does not exist: " why;

std::string show(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

std::string escaped(const std::string& s) { return json(s).dump(); }

class TokenizerReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string ref = env_path("TESSERA_TOKENIZER_REF");
    if (ref.empty()) return;
    std::ifstream in(ref);
    std::stringstream ss;
    ss << in.rdbuf();
    ref_ = new json(json::parse(ss.str()));
    std::string model = env_path("TESSERA_DEFAULT_MODEL");
    if (model.empty()) model = (*ref_)["model"].get<std::string>();
    gguf_ = new Tokenizer(Tokenizer::from_model_path(model));
    hf_json_ = new Tokenizer(Tokenizer::from_model_path((*ref_)["hf_dir"].get<std::string>()));
  }
  static void TearDownTestSuite() {
    delete ref_, delete gguf_, delete hf_json_;
    ref_ = nullptr, gguf_ = nullptr, hf_json_ = nullptr;
  }
  void SetUp() override {
    if (!ref_)
      GTEST_SKIP() << "TESSERA_TOKENIZER_REF is unset or missing: run tests/python/tokenizer_reference.py "
                      "MODEL.gguf OUT.json (the ctest fixture tokenizer_reference does) and point it there";
  }

  // Compares encode() with the reference ids for every case; returns the number of mismatches.
  static int check_cases(const Tokenizer& tok, const json& cases, bool parse_special, const char* label) {
    int wrong = 0;
    for (const auto& c : cases) {
      const std::string text = c["text"].get<std::string>();
      const auto want = c["ids"].get<std::vector<int32_t>>();
      const auto got = tok.encode(text, false, parse_special);
      if (got != want && ++wrong <= 5) {
        ADD_FAILURE() << label << ": text " << escaped(text) << "\n  want " << show(want) << "\n  got  " << show(got);
      }
    }
    return wrong;
  }

  static json* ref_;
  static Tokenizer* gguf_;
  static Tokenizer* hf_json_;
};
json* TokenizerReference::ref_ = nullptr;
Tokenizer* TokenizerReference::gguf_ = nullptr;
Tokenizer* TokenizerReference::hf_json_ = nullptr;

TEST_F(TokenizerReference, IdsMatchHuggingFace) {
  const json& cases = (*ref_)["cases"];
  ASSERT_GE(cases.size(), 1000u);
  const int wrong_gguf = check_cases(*gguf_, cases, true, "gguf");
  const int wrong_json = check_cases(*hf_json_, cases, true, "tokenizer.json");
  const int wrong_plain = check_cases(*gguf_, (*ref_)["no_special_cases"], false, "gguf, parse_special=false");
  std::printf("[ reference ] %s\n", (*ref_)["reference"].get<std::string>().c_str());
  std::printf(
      "[ reference ] %zu strings: %zu identical from GGUF, %zu from tokenizer.json; %zu/%zu with "
      "parse_special=false\n",
      cases.size(), cases.size() - wrong_gguf, cases.size() - wrong_json,
      (*ref_)["no_special_cases"].size() - wrong_plain, (*ref_)["no_special_cases"].size());
  EXPECT_EQ(wrong_gguf, 0);
  EXPECT_EQ(wrong_json, 0);
  EXPECT_EQ(wrong_plain, 0);
}

// The same vocabulary behind GPT-2's and Llama-3's pre-tokenizers (Split regex, ignore_merges), via tokenizer.json.
TEST_F(TokenizerReference, OtherPreTokenizersMatchHuggingFace) {
  ASSERT_FALSE((*ref_)["variants"].empty());
  const json& cases = (*ref_)["cases"];
  for (const auto& v : (*ref_)["variants"]) {
    const Tokenizer tok = Tokenizer::from_model_path(v["hf_dir"].get<std::string>());
    const json& ids = v["ids"];
    ASSERT_EQ(ids.size(), cases.size());
    int wrong = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::string text = cases[i]["text"].get<std::string>();
      const auto want = ids[i].get<std::vector<int32_t>>();
      const auto got = tok.encode(text);
      if (got != want && ++wrong <= 5)
        ADD_FAILURE() << v["pre"] << ": text " << escaped(text) << "\n  want " << show(want) << "\n  got  "
                      << show(got);
    }
    std::printf("[ reference ] pre-tokenizer %s: %zu/%zu strings identical\n", v["pre"].get<std::string>().c_str(),
                cases.size() - wrong, cases.size());
    EXPECT_EQ(wrong, 0) << v["pre"];
  }
}

TEST_F(TokenizerReference, MetadataMatches) {
  EXPECT_EQ(gguf_->vocab_size(), (*ref_)["vocab_size"].get<int32_t>());
  EXPECT_EQ(gguf_->bos_id(), (*ref_)["bos_id"].get<int32_t>());
  EXPECT_EQ(gguf_->eos_id(), (*ref_)["eos_id"].get<int32_t>());
  EXPECT_EQ(gguf_->add_bos(), (*ref_)["add_bos"].get<bool>());
  EXPECT_EQ(hf_json_->bos_id(), gguf_->bos_id());
  EXPECT_EQ(hf_json_->eos_id(), gguf_->eos_id());
  EXPECT_EQ(hf_json_->vocab_size(), gguf_->vocab_size());
}

TEST_F(TokenizerReference, RoundTripsAndStreams) {
  int wrong = 0;
  for (const auto& c : (*ref_)["cases"]) {
    const std::string text = c["text"].get<std::string>();
    ASSERT_TRUE(utf8::is_valid(text));
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::string back = gguf_->decode(ids);
    if (back != text && ++wrong <= 5) ADD_FAILURE() << "round trip of " << escaped(text) << " gave " << escaped(back);
    IncrementalDecoder dec(*gguf_);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = dec.push(id);
      ASSERT_TRUE(utf8::is_valid(piece)) << "invalid UTF-8 mid-stream for " << escaped(text);
      streamed += piece;
    }
    streamed += dec.flush();
    if (streamed != text && ++wrong <= 5)
      ADD_FAILURE() << "stream of " << escaped(text) << " gave " << escaped(streamed);
  }
  EXPECT_EQ(wrong, 0);
}

TEST_F(TokenizerReference, DecodeMatchesHuggingFace) {
  int wrong = 0;
  for (const auto& c : (*ref_)["decode_cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::string want = c["text"].get<std::string>();
    if (gguf_->decode(ids) != want && ++wrong <= 5)
      ADD_FAILURE() << show(ids) << "\n  want " << escaped(want) << "\n  got  " << escaped(gguf_->decode(ids));
    if (gguf_->decode(ids, true) != c["text_skip_special"].get<std::string>() && ++wrong <= 5)
      ADD_FAILURE() << "skip_special: " << show(ids);
    IncrementalDecoder dec(*gguf_);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = dec.push(id);
      ASSERT_TRUE(utf8::is_valid(piece));
      streamed += piece;
    }
    streamed += dec.flush();
    if (streamed != want && ++wrong <= 5) ADD_FAILURE() << "streamed " << show(ids) << " gave " << escaped(streamed);
  }
  EXPECT_EQ(wrong, 0);
}

TEST_F(TokenizerReference, ChatTemplateMatchesTransformers) {
  ASSERT_FALSE((*ref_)["chats"].empty());
  for (const auto& c : (*ref_)["chats"]) {
    std::vector<ChatMessage> msgs;
    for (const auto& m : c["messages"]) msgs.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    const bool gen = c["add_generation_prompt"].get<bool>();
    const std::string text = gguf_->apply_chat_template(msgs, gen);
    EXPECT_EQ(text, c["text"].get<std::string>()) << c["messages"].dump();
    EXPECT_EQ(hf_json_->apply_chat_template(msgs, gen), text);
    EXPECT_EQ(gguf_->encode(text), c["ids"].get<std::vector<int32_t>>());
  }
}

// --- the default model alone (no Python needed) ------------------------------------------------------

TEST(DefaultModel, SmolLM2Metadata) {
  REQUIRE_ENV(model, "TESSERA_DEFAULT_MODEL", "set it to SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh)");
  const Tokenizer tok = Tokenizer::from_model_path(model);
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_EQ(tok.bos_id(), 1);  // <|im_start|>
  EXPECT_EQ(tok.eos_id(), 2);  // <|im_end|>
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.stop_ids(), (std::vector<int32_t>{0, 2}));  // <|endoftext|>, <|im_end|>
  EXPECT_EQ(tok.apply_chat_template({{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // SmolLM2 splits every digit
  const auto ids = tok.encode("2024");
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(tok.decode(ids), "2024");
}

TEST(DefaultModel, EncodesOneMegabyteWellUnderASecond) {
  REQUIRE_ENV(model, "TESSERA_DEFAULT_MODEL", "set it to SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh)");
  const Tokenizer tok = Tokenizer::from_model_path(model);
  // ~1 MB of mixed text: prose with a Zipf-like word mix, numbers, code, CJK, emoji (deterministic)
  static const char* kWords[] = {
      "the",       "of",       "and",         "to",        "in",      "is",         "that",   "for",
      "it",        "as",       "was",         "with",      "be",      "by",         "on",     "not",
      "he",        "this",     "are",         "or",        "his",     "from",       "at",     "which",
      "tokenizer", "parallel", "transformer", "inference", "latency", "throughput", "naïve",  "Zürich",
      "日本語",    "模型",     "😀",           "don't",     "it's",    "we'll",      "x86_64", "std::vector<int>",
      "return",    "{",        "}",           "(x)",       "==",      "\n",         "\n\n",   "    ",
      "\t"};
  constexpr size_t kNumWords = sizeof kWords / sizeof kWords[0];
  std::string text;
  uint64_t s = 42;
  while (text.size() < (1u << 20)) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const uint64_t r = s >> 33;
    if (r % 11 == 0) {
      text += ' ';
      text += std::to_string(r % 100000);
    } else {
      const size_t i = static_cast<size_t>((r % 1000) * (r % 1000) / 1000 * kNumWords / 1000);  // skewed
      text += (r & 1) ? " " : "";
      text += kWords[i];
      if (r % 7 == 0) {  // unseen words keep the cache honest
        text += '_';
        text += std::to_string(r % 997);
      }
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  const auto ids = tok.encode(text);
  const double cold_cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
  const double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto t1 = std::chrono::steady_clock::now();
  const auto again = tok.encode(text);
  const double warm = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("[ speed ] %.2f MB -> %zu tokens: %.3f s cold cache (%.3f s CPU, %.1f MB/s), %.3f s warm (%.1f MB/s)\n",
              text.size() / 1e6, ids.size(), cold, cold_cpu, text.size() / 1e6 / cold, warm, text.size() / 1e6 / warm);
  EXPECT_EQ(ids, again);
  EXPECT_EQ(tok.decode(ids), text);
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  EXPECT_LT(cold_cpu, 1.0) << "encoding 1 MB must take well under a second of CPU in an optimized build";
#endif
}

}  // namespace
}  // namespace tessera::tokenizer
