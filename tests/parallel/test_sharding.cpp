// tests/parallel/test_sharding.cpp — sharding rules: every head, FFN feature and vocabulary row is owned
// exactly once (K/V heads: by the ranks whose query heads read them), refusals name the sizes that work;
// and the wire format round-trips and rejects other versions and truncations.
#include <gtest/gtest.h>

#include <map>

#include "common/check.h"
#include "parallel/sharding.h"
#include "parallel/transport.h"

namespace tessera::parallel {
namespace {

TEST(Sharding, RangesPartitionEveryDimension) {
  for (const ShardShape s : {ShardShape{4, 4, 160, 256}, ShardShape{4, 2, 160, 256}, ShardShape{9, 3, 1536, 49152},
                             ShardShape{96, 8, 49152, 50257}, ShardShape{12, 12, 3072, 50257}}) {
    for (int tp : valid_tp_sizes(s, 16)) {
      std::vector<int> q(s.n_heads), f(s.ffn), v(s.vocab);
      for (int r = 0; r < tp; ++r) {
        const Shard sh = make_shard(s, r, tp);
        for (auto i = sh.q_heads.begin; i < sh.q_heads.end; ++i) ++q[i];
        for (auto i = sh.ffn.begin; i < sh.ffn.end; ++i) ++f[i];
        for (auto i = sh.vocab.begin; i < sh.vocab.end; ++i) ++v[i];
        // Every local query head reads a local K/V head (GQA group arithmetic).
        const int64_t group = s.n_heads / s.n_kv_heads;
        for (auto h = sh.q_heads.begin; h < sh.q_heads.end; ++h) {
          EXPECT_GE(h / group, sh.kv_heads.begin);
          EXPECT_LT(h / group, sh.kv_heads.end);
        }
        // Local arithmetic of the forward pass: local query heads per local K/V head is the model's group.
        if (tp <= s.n_kv_heads) {
          EXPECT_EQ(sh.q_heads.size() / sh.kv_heads.size(), group);
        } else {
          EXPECT_EQ(sh.kv_heads.size(), 1);
        }
      }
      for (int c : q) EXPECT_EQ(c, 1) << "tp " << tp;
      for (int c : f) EXPECT_EQ(c, 1) << "tp " << tp;
      for (int c : v) EXPECT_EQ(c, 1) << "tp " << tp;
    }
  }
}

TEST(Sharding, GqaReplicatesKvHeadsWhenTpExceedsThem) {
  const ShardShape s{4, 2, 160, 256};
  std::map<int64_t, int> readers;
  for (int r = 0; r < 4; ++r) {
    const Shard sh = make_shard(s, r, 4);
    EXPECT_EQ(sh.kv_heads.size(), 1);
    ++readers[sh.kv_heads.begin];
  }
  EXPECT_EQ(readers, (std::map<int64_t, int>{{0, 2}, {1, 2}}));
}

TEST(Sharding, SmolLM2TakesOneAndThreeAndRefusesTwoNamingTheSizes) {
  const ShardShape smol{9, 3, 1536, 49152};
  EXPECT_EQ(valid_tp_sizes(smol, 16), (std::vector<int>{1, 3}));
  try {
    check_tp_size(smol, 2);
    FAIL() << "TP 2 accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("9 attention heads"), std::string::npos) << m;
    EXPECT_NE(m.find("sizes that work for this model: 1, 3"), std::string::npos) << m;
  }
  EXPECT_THROW(make_shard(smol, 0, 4), Error);
}

TEST(Sharding, UnevenVocabularyShardsCoverTheTail) {
  const ShardShape gpt2{12, 12, 3072, 50257};
  const Shard last = make_shard(gpt2, 3, 4);
  EXPECT_EQ(last.vocab.end, 50257);
  EXPECT_EQ(make_shard(gpt2, 0, 4).vocab.size(), 12565);
}

StepPlan sample_plan() {
  StepPlan p;
  p.step_id = 42;
  p.release_slots = {3};
  p.prefill_cols = 3;
  p.prefill_tokens = {0, 5, 6, 7, 8, 9};
  p.prefill_pad = {1, 0};
  p.prefill_slots = {0, 1};
  p.prefill_sampling = {SamplingParams{0.7f, 0.9f, 40, 0.1f, 0.2f, 1234567890123ull, 2},
                        SamplingParams{.temperature = 0.0f}};
  p.prefill_cached = {0, 16};
  p.prefill_history_len = {0, 2};
  p.prefill_history = {21, 22};
  p.prefill_sampling[0].min_p = 0.05f;
  p.prefill_sampling[0].repetition_penalty = 1.3f;
  p.prefill_sampling[0].min_tokens = 4;
  p.prefill_bias_len = {2, 0};
  p.prefill_bias = {{5, -100.0f}, {9, 2.5f}};
  p.prefill_stop_len = {1, 0};
  p.prefill_stop = {2};
  p.prefill_prompt_len = {3, 0};
  p.prefill_prompt = {5, 6, 7};
  p.decode_tokens = {11};
  p.decode_slots = {2};
  p.decode_positions = {17};
  p.table_width = 2;
  p.tables = {4, -1, 0, 7, 2, 3};
  return p;
}

TEST(Transport, PlanAndResultRoundTrip) {
  const StepPlan p = sample_plan();
  const StepPlan q = decode_plan(encode_plan(p));
  EXPECT_EQ(q.step_id, 42u);
  EXPECT_EQ(q.prefill_tokens, p.prefill_tokens);
  EXPECT_EQ(q.prefill_sampling[0].seed, 1234567890123ull);
  EXPECT_EQ(q.prefill_sampling[0].top_k, 40);
  EXPECT_EQ(q.decode_positions, p.decode_positions);
  EXPECT_EQ(q.n_rows(), 3);
  EXPECT_EQ(q.prefill_cached, p.prefill_cached);
  EXPECT_EQ(q.prefill_history_len, p.prefill_history_len);
  EXPECT_EQ(q.prefill_history, p.prefill_history);
  EXPECT_EQ(q.prefill_sampling[0].min_p, 0.05f);
  EXPECT_EQ(q.prefill_sampling[0].repetition_penalty, 1.3f);
  EXPECT_EQ(q.prefill_sampling[0].min_tokens, 4);
  EXPECT_EQ(q.prefill_sampling[1].repetition_penalty, 1.0f);
  EXPECT_EQ(q.prefill_bias_len, p.prefill_bias_len);
  ASSERT_EQ(q.prefill_bias.size(), 2u);
  EXPECT_EQ(q.prefill_bias[1].token, 9);
  EXPECT_EQ(q.prefill_bias[1].bias, 2.5f);
  EXPECT_EQ(q.prefill_stop_len, p.prefill_stop_len);
  EXPECT_EQ(q.prefill_stop, p.prefill_stop);
  EXPECT_EQ(q.prefill_prompt_len, p.prefill_prompt_len);
  EXPECT_EQ(q.prefill_prompt, p.prefill_prompt);
  EXPECT_EQ(q.table_width, 2);
  EXPECT_EQ(q.tables, p.tables);
  StepPlan bad = p;
  bad.tables.pop_back();  // a table row short
  EXPECT_THROW(decode_plan(encode_plan(bad)), Error);
  bad = p;
  bad.prefill_history_len = {0, 3};  // more history than sent
  EXPECT_THROW(decode_plan(encode_plan(bad)), Error);
  bad = p;
  bad.prefill_bias_len = {2};  // one length for two rows
  EXPECT_THROW(decode_plan(encode_plan(bad)), Error);
  bad = p;
  bad.prefill_prompt.pop_back();  // fewer prompt tokens than their lengths say
  EXPECT_THROW(decode_plan(encode_plan(bad)), Error);
  bad = p;
  bad.prefill_stop_len = {};  // no lengths: every list empty, but one was sent
  EXPECT_THROW(decode_plan(encode_plan(bad)), Error);
  bad.prefill_stop = {};
  EXPECT_NO_THROW(decode_plan(encode_plan(bad)));
  StepResult r;
  r.step_id = 42;
  r.tokens = {1, 2, 3};
  r.logprobs = {-0.5f, -1.0f, -2.0f};
  r.top_logprobs = {{{1, -0.5f}}, {}, {{3, -2.0f}, {4, -3.0f}}};
  r.n_slots = 12;
  r.n_blocks = 300;
  r.block_size = 16;
  r.error = "none";
  const StepResult s = decode_result(encode_result(r));
  EXPECT_EQ(s.n_slots, 12);
  EXPECT_EQ(s.n_blocks, 300);
  EXPECT_EQ(s.block_size, 16);
  EXPECT_EQ(s.tokens, r.tokens);
  EXPECT_EQ(s.top_logprobs[2][1].token, 4);
  EXPECT_EQ(s.error, "none");
}

TEST(Transport, VersionMismatchAndTruncationAreClearErrors) {
  auto bytes = encode_plan(sample_plan());
  auto other = bytes;
  other[4] = 99;  // the version field
  try {
    decode_plan(other);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("wire version 99, this build speaks " + std::to_string(kWireVersion)),
              std::string::npos)
        << e.what();
  }
  for (size_t n : {size_t{0}, size_t{7}, size_t{16}, bytes.size() / 2, bytes.size() - 1})
    EXPECT_THROW(decode_plan(std::span<const uint8_t>(bytes.data(), n)), Error) << n;
  bytes[0] ^= 0xFF;
  EXPECT_THROW(decode_plan(bytes), Error);
}

}  // namespace
}  // namespace tessera::parallel
