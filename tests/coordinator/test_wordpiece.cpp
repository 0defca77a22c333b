// tests/coordinator/test_wordpiece.cpp — the WordPiece (BERT) tokenizer: the normalizer, pre-tokenizer and model on
// a tokenizer.json the test writes itself, and the real encoder (all-MiniLM-L6-v2) against Hugging Face on the
// strings, truncation cases and decodes (also streamed) that tests/python/wordpiece_reference.py writes.
//
// Environment: TESSERA_WORDPIECE_REF (the reference JSON; it names the model directory). Without it the
// reference tests skip and say how to make it.
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/check.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/wordpiece.h"

namespace tessera::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string show(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

// A tiny BERT tokenizer.json in a temp directory.
Tokenizer tiny_bert(const json& normalizer, const json& truncation = nullptr) {
  const std::vector<std::string> vocab = {"[PAD]",  "[UNK]", "[CLS]", "[SEP]", "un", "##aff",
                                          "##able", "hello", "world", "!",     ",",  "cafe",
                                          "中",     "##s",   "a",     "##b",   "σ",  "i"};
  json v = json::object();
  for (size_t i = 0; i < vocab.size(); ++i) v[vocab[i]] = i;
  json added = json::array();
  for (int i = 0; i < 4; ++i)
    added.push_back({{"id", i},
                     {"content", vocab[i]},
                     {"special", true},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false}});
  const json doc = {{"version", "1.0"},
                    {"truncation", truncation},
                    {"added_tokens", added},
                    {"normalizer", normalizer},
                    {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
                    {"post_processor", {{"type", "BertProcessing"}, {"sep", {"[SEP]", 3}}, {"cls", {"[CLS]", 2}}}},
                    {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
                    {"model",
                     {{"type", "WordPiece"},
                      {"unk_token", "[UNK]"},
                      {"continuing_subword_prefix", "##"},
                      {"max_input_chars_per_word", 9},
                      {"vocab", v}}}};
  const fs::path dir = fs::temp_directory_path() / ("tessera_wp_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "tokenizer.json";
  std::ofstream(file) << doc.dump();
  Tokenizer tok = Tokenizer::from_tokenizer_json(file.string());
  fs::remove_all(dir);
  return tok;
}

const json kBert = {{"type", "BertNormalizer"},
                    {"clean_text", true},
                    {"handle_chinese_chars", true},
                    {"strip_accents", nullptr},
                    {"lowercase", true}};

TEST(WordPiece, NormalizerCleansFoldsAndSplitsCjk) {
  const BertNormalizerOptions o;
  EXPECT_EQ(bert_normalize("Caf\u00E9\tX\x01y\u200Bz", o), "cafe xyz");
  EXPECT_EQ(bert_normalize("e\u0301\u00D1", o), "en");
  EXPECT_EQ(bert_normalize("a\u4E2Db", o), "a \u4E2D b");
  EXPECT_EQ(bert_normalize("\u0130", o), "i");                   // NFD drops the dot above before lower-casing
  EXPECT_EQ(bert_normalize("\u03A3\u03A3", o), "\u03C3\u03C3");  // no final-sigma context
  BertNormalizerOptions keep = o;
  keep.strip_accents = false;
  EXPECT_EQ(bert_normalize("\u0130", keep), "i\u0307");  // the full lower-case mapping: two characters
  BertNormalizerOptions none{false, false, false, false};
  EXPECT_EQ(bert_normalize("A\tB\u4E2D", none), "A\tB\u4E2D");
}

TEST(WordPiece, PreTokenizerSplitsWhitespaceAndIsolatesPunctuation) {
  std::vector<std::string_view> words;
  bert_pre_tokenize("Hey friend!   How?!$x \u00BFy\u3001", words);
  const std::vector<std::string_view> want = {"Hey", "friend", "!", "How", "?", "!", "$", "x", "\u00BF", "y", "\u3001"};
  EXPECT_EQ(words, want);
}

TEST(WordPiece, EncodesGreedyLongestMatchWithSpecials) {
  const Tokenizer tok = tiny_bert(kBert);
  EXPECT_EQ(tok.encode("UnAffable, hello!", false), (std::vector<int32_t>{4, 5, 6, 10, 7, 9}));
  EXPECT_EQ(tok.encode("hello world", true), (std::vector<int32_t>{2, 7, 8, 3}));
  EXPECT_EQ(tok.encode("unx", false), (std::vector<int32_t>{1}));         // cannot be covered: the whole word
  EXPECT_EQ(tok.encode("abbbbbbbbb", false), (std::vector<int32_t>{1}));  // 10 characters > 9
  EXPECT_EQ(tok.encode("abbbbbbb", false), (std::vector<int32_t>{14, 15, 15, 15, 15, 15, 15, 15}));
  EXPECT_EQ(tok.encode("\u4E2D\u4E2Ds", false), (std::vector<int32_t>{12, 12, 1}));
  EXPECT_EQ(tok.encode("x[SEP]hello", false), (std::vector<int32_t>{1, 3, 7}));
  EXPECT_EQ(tok.decode(tok.encode("unaffable , hello !", true), true), "unaffable, hello!");
  EXPECT_EQ(tok.decode(tok.encode("hello", true), false), "[CLS] hello [SEP]");
}

TEST(WordPiece, TruncatesKeepingTheSpecials) {
  const Tokenizer tok = tiny_bert(kBert, {{"max_length", 4}, {"strategy", "LongestFirst"}, {"stride", 0}});
  EXPECT_EQ(tok.max_length(), 4);
  EXPECT_EQ(tok.encode_truncated("hello world hello", tok.max_length(), true), (std::vector<int32_t>{2, 7, 8, 3}));
  EXPECT_EQ(tok.encode_truncated("hello world hello", 2, false), (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(tok.encode_truncated("hello world hello", 0, false), (std::vector<int32_t>{7, 8, 7}));
}

TEST(WordPiece, RejectsWhatItDoesNotImplement) { EXPECT_THROW(tiny_bert({{"type", "NFC"}}), Error); }

class WordPieceReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* ref = std::getenv("TESSERA_WORDPIECE_REF");
    if (!ref || !*ref || !fs::exists(ref)) return;
    std::ifstream in(ref);
    std::stringstream ss;
    ss << in.rdbuf();
    ref_ = new json(json::parse(ss.str()));
    tok_ = new Tokenizer(Tokenizer::from_model_path((*ref_)["model_dir"].get<std::string>()));
  }
  static void TearDownTestSuite() {
    delete ref_, delete tok_;
    ref_ = nullptr, tok_ = nullptr;
  }
  void SetUp() override {
    if (!ref_)
      GTEST_SKIP() << "TESSERA_WORDPIECE_REF is unset or missing: fetch the encoder (scripts/fetch-encoder.sh), run "
                      "tests/python/wordpiece_reference.py MODEL_DIR OUT.json (the ctest fixture "
                      "wordpiece_reference does) and point it there";
  }
  static json* ref_;
  static Tokenizer* tok_;
};
json* WordPieceReference::ref_ = nullptr;
Tokenizer* WordPieceReference::tok_ = nullptr;

TEST_F(WordPieceReference, EveryStringMatchesHuggingFace) {
  const json& cases = (*ref_)["cases"];
  ASSERT_GE(cases.size(), 1000u);
  int wrong = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    for (const bool special : {false, true}) {
      const auto want = c[special ? "ids_special" : "ids"].get<std::vector<int32_t>>();
      const auto got = tok_->encode(text, special);
      if (got != want && ++wrong <= 5)
        ADD_FAILURE() << "specials " << special << ", text " << json(text).dump() << "\n  want " << show(want)
                      << "\n  got  " << show(got);
    }
  }
  EXPECT_EQ(wrong, 0) << "of " << 2 * cases.size() << " encodings";
}

TEST_F(WordPieceReference, TruncationMatchesHuggingFace) {
  EXPECT_EQ(tok_->max_length(), (*ref_)["max_length"].get<int32_t>());
  const json& cases = (*ref_)["truncation"];
  ASSERT_FALSE(cases.empty());
  int wrong = 0;
  for (const auto& c : cases) {
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const auto got = tok_->encode_truncated(c["text"].get<std::string>(), c["max_length"].get<int32_t>(),
                                            c["add_special"].get<bool>());
    if (got != want && ++wrong <= 5) ADD_FAILURE() << c.dump() << "\n  got " << show(got);
  }
  EXPECT_EQ(wrong, 0) << "of " << cases.size() << " truncation cases";
}

TEST_F(WordPieceReference, DecodeMatchesHuggingFace) {
  const json& cases = (*ref_)["decodes"];
  ASSERT_FALSE(cases.empty());
  int wrong = 0;
  for (const auto& c : cases) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::string want = c["text"].get<std::string>();
    const bool skip = c["skip_special"].get<bool>();
    const std::string got = tok_->decode(ids, skip);
    IncrementalDecoder stream(*tok_, skip);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    if ((got != want || streamed != want) && ++wrong <= 5)
      ADD_FAILURE() << "ids " << show(ids) << "\n  want " << json(want).dump() << "\n  got  " << json(got).dump()
                    << "\n  streamed " << json(streamed).dump();
  }
  EXPECT_EQ(wrong, 0) << "of " << cases.size() << " decodes";
}

}  // namespace
}  // namespace tessera::tokenizer
