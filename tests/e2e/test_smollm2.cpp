// tests/e2e/test_smollm2.cpp — the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against Hugging Face
// transformers running the same dequantized weights (tests/python/smollm2_reference.py): the tokenizer gives
// the same prompt ids, greedy tokens are identical for 32 steps on every prompt, logits are close; and a
// pre-padded group of 8 real prompts gives each the tokens it gets alone.
#include <gtest/gtest.h>

#include "coordinator/tokenizer/tokenizer.h"
#include "tests/e2e/e2e_util.h"

namespace tessera::e2e {
namespace {

// fp32 against fp32 through 30 layers: observed max |Δ| 5.5e-5 to 1.2e-4 over the 5 prompts (2026-11-22); the
// bound leaves ~8x room for BLAS summation order on other CPUs without hiding a real error (a wrong layer or
// a mis-rounded dequantization moves logits by far more).
constexpr double kSmolLogitTolerance = 1e-3;

class SmolLM2 : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = env_dir("TESSERA_DEFAULT_MODEL");
    if (path.empty()) return;
    model_ = new worker::Transformer(model::load_weights(path));
    tok_ = new tokenizer::Tokenizer(tokenizer::Tokenizer::from_model_path(path));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tok_;
    model_ = nullptr;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!model_ || env_dir("TESSERA_SMOLLM2_REF").empty())
      GTEST_SKIP() << "TESSERA_DEFAULT_MODEL / TESSERA_SMOLLM2_REF not set (run scripts/fetch-model.sh and configure "
                      "with -DTESSERA_DEFAULT_MODEL=... -DTESSERA_PYTHON=...)";
  }
  static inline worker::Transformer* model_ = nullptr;
  static inline tokenizer::Tokenizer* tok_ = nullptr;
};

TEST_F(SmolLM2, TokenizerGivesTransformersPromptIds) {
  const Reference ref = read_reference(env_dir("TESSERA_SMOLLM2_REF"));
  ASSERT_GE(ref.cases.size(), 5u);
  for (const auto& c : ref.cases) EXPECT_EQ(tok_->encode(c.prompt_text, false, true), c.prompt_ids) << c.prompt_text;
}

TEST_F(SmolLM2, GreedyTokensIdenticalAndLogitsClose) {
  const Reference ref = read_reference(env_dir("TESSERA_SMOLLM2_REF"));
  ASSERT_GE(ref.cases.size(), 5u);
  for (const auto& c : ref.cases) {
    coordinator::GenerateRequest r;
    r.prompt = c.prompt_ids;
    r.max_tokens = static_cast<int32_t>(c.greedy_ids.size());
    r.sampling.temperature = 0.0f;
    ASSERT_GE(c.greedy_ids.size(), 32u);
    const auto got = generate(*model_, {r})[0].tokens;
    EXPECT_EQ(got, c.greedy_ids) << "prompt: " << c.prompt_text << "\n tessera: " << tok_->decode(got)
                                 << "\n transformers: " << c.greedy_text;
    const LogitStats s = compare_logits(*model_, c);
    EXPECT_LE(s.max_abs_diff, kSmolLogitTolerance) << c.prompt_text;
    EXPECT_EQ(s.top1_mismatches, 0) << c.prompt_text;
    std::printf("[ smollm2 ] max |Δlogit| %.2e over %lld steps: %s\n", s.max_abs_diff,
                static_cast<long long>(c.n_steps), c.prompt_text.substr(0, 40).c_str());
  }
}

TEST_F(SmolLM2, PrePaddedGroupOf8RealPromptsGivesTheTokensOfEachPromptAlone) {
  const std::vector<std::string> texts = {
      "The capital of France is",
      "Water boils at",
      "def fibonacci(n):",
      "Once upon a time, in a small village by the sea, there lived an old fisherman who",
      "1, 2, 3, 4,",
      "The three primary colors are",
      "Q: What is the largest planet in the solar system?\nA:",
      "Photosynthesis is the process by which plants convert sunlight, water and carbon dioxide into"};
  std::vector<coordinator::GenerateRequest> reqs;
  for (const auto& t : texts) {
    coordinator::GenerateRequest r;
    r.prompt = tok_->encode(t, true, false);
    r.max_tokens = 12;
    r.sampling.temperature = 0.0f;
    reqs.push_back(r);
  }
  const auto together = generate(*model_, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto alone = generate(*model_, {reqs[i]})[0].tokens;
    EXPECT_EQ(together[i].tokens, alone) << texts[i];
  }
}

TEST_F(SmolLM2, CapitalOfFranceIsParis) {
  coordinator::GenerateRequest r;
  r.prompt = tok_->encode("The capital of France is", true, false);
  r.max_tokens = 8;
  r.sampling.temperature = 0.0f;
  const std::string text = tok_->decode(generate(*model_, {r})[0].tokens);
  EXPECT_NE(text.find("Paris"), std::string::npos) << text;
}

}  // namespace
}  // namespace tessera::e2e
