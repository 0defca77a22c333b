// tests/kernels/test_cuda_attention.cpp — prefill (tensor-core and FMA kernels) and decode (split + combine)
// attention on the GPU against the CPU ops; long sequences (32K, 128K) against a float64 host reference on a
// sample of rows; GQA ratios 1, 2, 3, 4, 8; left padding; pad invariance (bitwise).
#include <algorithm>
#include <set>

#include "kernels/cuda/attention_prefill.cuh"
#include "kernels/ops.h"
#include "tests/kernels/test_cuda_util.h"

namespace tessera::gpu::testing {
namespace {

Tol attn_tol(DType t) {
  switch (t) {
    case DType::F32:
      return {5e-5, 5e-5};
    case DType::F16:
      return {3e-3, 3e-3};
    case DType::BF16:
      return {1.5e-2, 1e-2};
  }
  return {0, 0};
}

// A prefill group in the fused-QKV layout the model produces: rows [B * L] of [n_heads + 2 n_kv, D].
struct Group {
  int64_t B, L, H, Hkv, D;
  std::vector<int32_t> pad;
  int64_t stride() const { return (H + 2 * Hkv) * D; }
};

struct PrefillRun {
  std::vector<float> qkv;  // host copy, rounded to the storage type
  std::vector<float> out;  // GPU result [B, L, H, D]
};

PrefillRun run_prefill(const Group& g, DType t, uint32_t seed, const std::vector<float>* given = nullptr) {
  PrefillRun r;
  r.qkv = given != nullptr ? *given : randn(g.B * g.L * g.stride(), seed);
  quantize(r.qkv, t);
  auto dqkv = DeviceBuffer::from(r.qkv, t);
  auto dpad = DeviceBuffer::ints(g.pad);
  DeviceBuffer dout(g.B * g.L * g.H * g.D, t);
  dout.poison();
  const size_t esz = dtype_size(t);
  char* base = static_cast<char*>(dqkv.get());
  TESSERA_STATUS_CHECK(attention_prefill(base, g.stride(), base + g.H * g.D * esz, base + (g.H + g.Hkv) * g.D * esz,
                                         g.stride(), dpad.i32(), dout.get(), g.B, g.L, g.H, g.Hkv, g.D,
                                         1.f / std::sqrt(static_cast<float>(g.D)), t, nullptr));
  r.out = dout.download();
  return r;
}

std::vector<float> cpu_prefill(const Group& g, const std::vector<float>& qkv) {
  std::vector<float> ref(g.B * g.L * g.H * g.D);
  ops::attention_prefill(qkv.data(), g.stride(), qkv.data() + g.H * g.D, qkv.data() + (g.H + g.Hkv) * g.D, g.stride(),
                         g.pad.data(), ref.data(), g.B, g.L, g.H, g.Hkv, g.D, 1.f / std::sqrt(static_cast<float>(g.D)));
  return ref;
}

// float64 attention of one (b, i, h) query row, written as a plain two-pass softmax.
std::vector<float> ref_row(const Group& g, const std::vector<float>& qkv, int64_t b, int64_t i, int64_t h) {
  std::vector<float> o(g.D, 0.f);
  const int64_t p = g.pad[b];
  if (i < p) return o;
  const int64_t kvh = h / (g.H / g.Hkv);
  const float* q = &qkv[(b * g.L + i) * g.stride() + h * g.D];
  const double scale = 1.0 / std::sqrt(static_cast<double>(g.D));
  std::vector<double> s(i - p + 1);
  double mx = -1e300;
  for (int64_t j = p; j <= i; ++j) {
    const float* k = &qkv[(b * g.L + j) * g.stride() + (g.H + kvh) * g.D];
    double d = 0;
    for (int64_t c = 0; c < g.D; ++c) d += static_cast<double>(q[c]) * k[c];
    s[j - p] = d * scale;
    mx = std::max(mx, s[j - p]);
  }
  double sum = 0;
  std::vector<double> acc(g.D, 0.0);
  for (int64_t j = p; j <= i; ++j) {
    const double w = std::exp(s[j - p] - mx);
    sum += w;
    const float* v = &qkv[(b * g.L + j) * g.stride() + (g.H + g.Hkv + kvh) * g.D];
    for (int64_t c = 0; c < g.D; ++c) acc[c] += w * v[c];
  }
  for (int64_t c = 0; c < g.D; ++c) o[c] = static_cast<float>(acc[c] / sum);
  return o;
}

TEST(CudaAttentionPrefill, MatchesCpuAcrossShapesAndPaths) {
  TESSERA_SKIP_WITHOUT_GPU();
  std::vector<Group> groups = {
      {1, 1, 4, 4, 64, {0}},          {2, 7, 4, 4, 64, {0, 3}},   {3, 65, 6, 2, 128, {0, 1, 64}},
      {2, 200, 8, 2, 128, {17, 150}}, {2, 300, 3, 3, 96, {5, 0}}, {2, 1000, 8, 1, 64, {0, 999}},
      {1, 129, 4, 2, 128, {64}},      {1, 4096, 4, 1, 128, {0}},  {2, 2048, 9, 3, 64, {100, 0}},
  };
  if (quick()) groups = {{2, 7, 4, 4, 64, {0, 3}}, {3, 65, 6, 2, 128, {0, 1, 64}}, {2, 130, 3, 3, 96, {5, 0}}};
  std::set<PrefillPath> seen;
  for (DType t : kAllTypes) {
    for (const Group& g : groups) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " B " + std::to_string(g.B) + " L " + std::to_string(g.L) + " H " +
                   std::to_string(g.H) + "/" + std::to_string(g.Hkv) + " D " + std::to_string(g.D));
      if (t == DType::F32 && g.L > 2048) continue;  // the FMA kernel is the check mode: shorter shapes suffice
      const PrefillRun r = run_prefill(g, t, static_cast<uint32_t>(g.L * 7 + g.D));
      EXPECT_TRUE(all_close(r.out, cpu_prefill(g, r.qkv), attn_tol(t)));
      seen.insert(prefill_path(reinterpret_cast<void*>(256), g.stride(), reinterpret_cast<void*>(256 + 2 * g.H * g.D),
                               reinterpret_cast<void*>(256), g.stride(), reinterpret_cast<void*>(256), g.D, t));
    }
  }
  EXPECT_EQ(seen.size(), 2u) << "both prefill kernels must be exercised";
}

// The same prompt at pad 0 and at pad 37 gives bitwise the same rows (key tiles start at the first real key).
TEST(CudaAttentionPrefill, OutputDoesNotDependOnPadOffset) {
  TESSERA_SKIP_WITHOUT_GPU();
  for (DType t : {DType::BF16, DType::F32}) {
    for (int64_t D : {64, 128}) {
      const int64_t len = 300, shift = 37, H = 4, Hkv = 2;
      Group a{1, len, H, Hkv, D, {0}}, b{1, len + shift, H, Hkv, D, {static_cast<int32_t>(shift)}};
      auto qkv_a = randn(len * a.stride(), 21);
      std::vector<float> qkv_b(shift * b.stride(), 0.f);
      qkv_b.insert(qkv_b.end(), qkv_a.begin(), qkv_a.end());
      // Pad columns hold garbage in a real batch: it must not leak into real rows.
      for (int64_t x = 0; x < shift * b.stride(); ++x) qkv_b[x] = 1e4f;
      const auto ra = run_prefill(a, t, 0, &qkv_a), rb = run_prefill(b, t, 0, &qkv_b);
      const size_t row = H * D;
      std::vector<float> tail(rb.out.begin() + shift * row, rb.out.end());
      EXPECT_TRUE(all_close(tail, ra.out, {0, 0})) << dtype_name(t) << " D " << D;
      std::vector<float> pad_rows(rb.out.begin(), rb.out.begin() + shift * row), zeros(shift * row, 0.f);
      EXPECT_TRUE(all_close(pad_rows, zeros, {0, 0})) << "pad rows must be zeros";
    }
  }
}

// Long sequences: a sample of rows against the float64 reference (the CPU op on every row would take minutes).
void check_long(const Group& g, DType t) {
  SCOPED_TRACE(std::string(dtype_name(t)) + " L " + std::to_string(g.L));
  const PrefillRun r = run_prefill(g, t, static_cast<uint32_t>(g.L));
  std::vector<int64_t> rows = {0, 1, 63, 64, 65, 1000, g.L / 2, g.L - 65, g.L - 64, g.L - 2, g.L - 1};
  std::mt19937 rng(5);
  for (int i = 0; i < 12; ++i) rows.push_back(rng() % g.L);
  for (int64_t b = 0; b < g.B; ++b) {
    rows.push_back(g.pad[b]);
    if (g.pad[b] > 0) rows.push_back(g.pad[b] - 1);
    for (int64_t i : rows) {
      if (i < 0 || i >= g.L) continue;
      for (int64_t h : {int64_t{0}, g.H - 1}) {
        const auto want = ref_row(g, r.qkv, b, i, h);
        const std::vector<float> got(r.out.begin() + ((b * g.L + i) * g.H + h) * g.D,
                                     r.out.begin() + ((b * g.L + i) * g.H + h + 1) * g.D);
        EXPECT_TRUE(all_close(got, want, attn_tol(t))) << "b " << b << " row " << i << " head " << h;
      }
    }
  }
}

TEST(CudaAttentionPrefill, Long32KSampledRows) {
  TESSERA_SKIP_WITHOUT_GPU();
  if (quick()) GTEST_SKIP() << "long shapes skipped in quick mode (TESSERA_GPU_TEST_QUICK=1)";
  check_long({2, 32768, 4, 1, 128, {0, 5000}}, DType::BF16);
  check_long({1, 16384, 9, 3, 64, {123}}, DType::F16);
}

TEST(CudaAttentionPrefill, Long128KSampledRows) {
  TESSERA_SKIP_WITHOUT_GPU();
  if (quick()) GTEST_SKIP() << "long shapes skipped in quick mode (TESSERA_GPU_TEST_QUICK=1)";
  check_long({1, 131072, 2, 1, 128, {0}}, DType::BF16);
}

// --- decode --------------------------------------------------------------------------------------------------
struct DecodeCase {
  int64_t B, H, Hkv, D, max_ctx;
  std::vector<int32_t> lens, starts;
};

void run_decode(const DecodeCase& c, DType t) {
  SCOPED_TRACE(std::string(dtype_name(t)) + " B " + std::to_string(c.B) + " H " + std::to_string(c.H) + "/" +
               std::to_string(c.Hkv) + " D " + std::to_string(c.D) + " max_ctx " + std::to_string(c.max_ctx));
  const int64_t n_slots = c.B + 1, q_stride = (c.H + 2 * c.Hkv) * c.D;
  std::vector<int32_t> slots(c.B);
  for (int64_t b = 0; b < c.B; ++b) slots[b] = static_cast<int32_t>(n_slots - 1 - b);  // not the identity
  const size_t cache_n = n_slots * c.Hkv * c.max_ctx * c.D;
  auto ck = randn(cache_n, 31), cv = randn(cache_n, 32), q = randn(c.B * q_stride, 33);
  quantize(ck, t), quantize(cv, t), quantize(q, t);
  auto dck = DeviceBuffer::from(ck, t), dcv = DeviceBuffer::from(cv, t), dq = DeviceBuffer::from(q, t);
  auto dslots = DeviceBuffer::ints(slots), dstarts = DeviceBuffer::ints(c.starts), dlens = DeviceBuffer::ints(c.lens);
  DeviceBuffer dout(c.B * c.H * c.D, t);
  dout.poison();
  const DecodePlan plan = plan_attention_decode(c.B, c.H, c.Hkv, c.D, c.max_ctx, device_sm_count());
  DeviceBuffer ws(plan.workspace_bytes / 4 + 1, DType::F32);
  ws.poison();
  const float scale = 1.f / std::sqrt(static_cast<float>(c.D));
  TESSERA_STATUS_CHECK(attention_decode(dq.get(), q_stride, dck.get(), dcv.get(), dslots.i32(), dstarts.i32(),
                                        dlens.i32(), dout.get(), c.B, c.H, c.Hkv, c.D, c.max_ctx, scale, ws.get(),
                                        plan.workspace_bytes, t, nullptr));
  std::vector<float> ref(c.B * c.H * c.D);
  ops::attention_decode(q.data(), q_stride, ck.data(), cv.data(), slots.data(), c.starts.data(), c.lens.data(),
                        ref.data(), c.B, c.H, c.Hkv, c.D, c.max_ctx, scale);
  const Tol tol = t == DType::F32 ? Tol{2e-5, 1e-4} : t == DType::F16 ? Tol{2e-3, 2e-3} : Tol{1e-2, 1e-2};
  EXPECT_TRUE(all_close(dout.download(), ref, tol))
      << "n_splits " << plan.n_splits << " heads/block " << plan.heads_per_block;
}

TEST(CudaAttentionDecode, MatchesCpuAcrossContextsAndGqa) {
  TESSERA_SKIP_WITHOUT_GPU();
  std::vector<DecodeCase> small = {
      {3, 4, 4, 64, 64, {1, 63, 64}, {0, 1, 0}},               // GQA 1, tails of the 64-key tile
      {2, 9, 3, 64, 2048, {1000, 2043}, {5, 0}},               // GQA 3 (SmolLM2)
      {4, 8, 2, 128, 4096, {4096, 1, 65, 0}, {0, 0, 7, 100}},  // GQA 4, an empty sequence
      {2, 16, 2, 128, 3000, {2999, 1500}, {1, 1234}},          // GQA 8
      {2, 4, 2, 256, 500, {500, 3}, {0, 10}},                  // GQA 2, head_dim 256
      {24, 12, 12, 64, 1024, std::vector<int32_t>(24, 700), std::vector<int32_t>(24, 3)},  // n_splits == 1
  };
  if (quick()) small.resize(3);
  for (DType t : kAllTypes)
    for (const auto& c : small) run_decode(c, t);
}

TEST(CudaAttentionDecode, LongContexts) {
  TESSERA_SKIP_WITHOUT_GPU();
  if (quick()) GTEST_SKIP() << "long shapes skipped in quick mode (TESSERA_GPU_TEST_QUICK=1)";
  run_decode({1, 32, 8, 128, 32768, {32768}, {0}}, DType::BF16);
  run_decode({2, 16, 2, 128, 131072, {131072, 70000}, {0, 1234}}, DType::BF16);
  run_decode({1, 8, 8, 64, 131072, {131071}, {1}}, DType::F32);
}

TEST(CudaAttentionDecode, PlanFillsTheMachineAndStaysInBounds) {
  // Host-only planning: no device needed.
  const DecodePlan p1 = plan_attention_decode(1, 32, 8, 128, 131072, 132);
  EXPECT_EQ(p1.heads_per_block, 4);
  EXPECT_GE(p1.n_splits * 8, 8 * 132);
  EXPECT_EQ(p1.workspace_bytes, static_cast<size_t>(32 * p1.n_splits * 130 * 4));
  const DecodePlan p2 = plan_attention_decode(64, 96, 96, 128, 2048, 132);
  EXPECT_EQ(p2.n_splits, 1);
  EXPECT_EQ(p2.workspace_bytes, 0u);
  const DecodePlan p3 = plan_attention_decode(1, 9, 3, 64, 40, 132);
  EXPECT_EQ(p3.n_splits, 1) << "never more splits than 64-key tiles";
  EXPECT_EQ(p3.heads_per_block, 3);
}

TEST(CudaAttention, RejectsBadArguments) {
  const Status st = attention_decode(nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 8, 3, 64, 128,
                                     0.1f, nullptr, 0, DType::BF16, nullptr);
  EXPECT_NE(st.message.find("'n_kv_heads'"), std::string::npos) << st.message;
  const Status st2 =
      attention_prefill(nullptr, 0, nullptr, nullptr, 0, nullptr, nullptr, 1, 16, 4, 4, 512, 0.1f, DType::F16, nullptr);
  EXPECT_NE(st2.message.find("'head_dim'"), std::string::npos) << st2.message;
}

}  // namespace
}  // namespace tessera::gpu::testing
