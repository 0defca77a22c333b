// tests/e2e/test_oracles.cpp — tiny random GPT-2 and Llama checkpoints made by Hugging Face transformers
// (tests/python/make_oracles.py): tessera's logits within 1e-3 of transformers' at every step of a 32-token
// greedy path, identical greedy tokens, for every checkpoint and format; and pre-padded groups of 8 prompts
// of different lengths give each prompt the tokens it gets alone.
#include <gtest/gtest.h>

#include <random>

#include "tests/e2e/e2e_util.h"

namespace tessera::e2e {
namespace {

struct OracleParam {
  std::string model;   // directory under $TESSERA_ORACLES
  std::string format;  // "safetensors" or "gguf"
};

void PrintTo(const OracleParam& p, std::ostream* os) { *os << p.model << "/" << p.format; }

std::string param_name(const testing::TestParamInfo<OracleParam>& p) { return p.param.model + "_" + p.param.format; }

class Oracle : public testing::TestWithParam<OracleParam> {
 protected:
  void SetUp() override {
    root_ = env_dir("TESSERA_ORACLES");
    if (root_.empty()) GTEST_SKIP() << "TESSERA_ORACLES is not set (configure with -DTESSERA_PYTHON=<venv python>)";
    const std::string dir = root_ + "/" + GetParam().model;
    ref_ = read_reference(dir);
    const std::string path = GetParam().format == "gguf" ? dir + "/model-f32.gguf" : dir;
    model_ = std::make_unique<worker::Transformer>(model::load_weights(path));
  }
  std::string root_;
  Reference ref_;
  std::unique_ptr<worker::Transformer> model_;
};

std::vector<int32_t> greedy_alone(worker::Transformer& m, const std::vector<int32_t>& prompt, int32_t n) {
  coordinator::GenerateRequest r;
  r.prompt = prompt;
  r.max_tokens = n;
  r.sampling.temperature = 0.0f;
  return generate(m, {r})[0].tokens;
}

TEST_P(Oracle, LogitsWithin1e3OfTransformersAlongTheGreedyPath) {
  ASSERT_FALSE(ref_.cases.empty());
  for (size_t i = 0; i < ref_.cases.size(); ++i) {
    const LogitStats s = compare_logits(*model_, ref_.cases[i]);
    EXPECT_LE(s.max_abs_diff, 1e-3) << "case " << i;
    EXPECT_EQ(s.top1_mismatches, 0) << "case " << i;
    RecordProperty("case" + std::to_string(i) + "_max_abs_diff", std::to_string(s.max_abs_diff));
  }
}

TEST_P(Oracle, Greedy32TokensIdenticalToTransformers) {
  for (size_t i = 0; i < ref_.cases.size(); ++i) {
    const auto& c = ref_.cases[i];
    EXPECT_EQ(greedy_alone(*model_, c.prompt_ids, static_cast<int32_t>(c.greedy_ids.size())), c.greedy_ids)
        << "case " << i;
  }
}

TEST_P(Oracle, PrePaddedGroupOf8GivesTheTokensOfEachPromptAlone) {
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& c : ref_.cases) prompts.push_back(c.prompt_ids);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(model_->config().vocab - 1));
  for (int len : {1, 2, 9, 23, 60}) {
    if (prompts.size() == 8) break;
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (auto& t : p) t = tok(rng);
    prompts.push_back(p);
  }
  ASSERT_EQ(prompts.size(), 8u);
  std::vector<coordinator::GenerateRequest> reqs;
  for (const auto& p : prompts) {
    coordinator::GenerateRequest r;
    r.prompt = p;
    r.max_tokens = 16;
    r.sampling.temperature = 0.0f;
    reqs.push_back(r);
  }
  const auto together = generate(*model_, reqs);
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(together[i].tokens, greedy_alone(*model_, prompts[i], 16))
        << "prompt " << i << " (length " << prompts[i].size() << ")";
}

TEST_P(Oracle, SeededSamplingDoesNotDependOnBatchCompany) {
  std::vector<coordinator::GenerateRequest> reqs;
  for (size_t i = 0; i < ref_.cases.size(); ++i) {
    coordinator::GenerateRequest r;
    r.prompt = ref_.cases[i].prompt_ids;
    r.max_tokens = 12;
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = 1000 + i;
    reqs.push_back(r);
  }
  const auto together = generate(*model_, reqs);
  for (size_t i = 0; i < reqs.size(); ++i)
    EXPECT_EQ(together[i].tokens, generate(*model_, {reqs[i]})[0].tokens) << "request " << i;
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, Oracle,
                         testing::Values(OracleParam{"gpt2", "safetensors"},
                                         OracleParam{"llama_gqa_tied", "safetensors"},
                                         OracleParam{"llama_gqa_tied", "gguf"},
                                         OracleParam{"llama_gqa_untied", "safetensors"},
                                         OracleParam{"llama_gqa_untied", "gguf"},
                                         OracleParam{"llama_mha", "safetensors"}, OracleParam{"llama_mha", "gguf"}),
                         param_name);

}  // namespace
}  // namespace tessera::e2e
