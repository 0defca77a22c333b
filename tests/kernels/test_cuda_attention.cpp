// tests/kernels/test_cuda_attention.cpp — prefill (tensor-core and FMA kernels) and decode (split + combine, and
// warp-per-head for any other head_dim <= 256) attention on the GPU against the CPU ops; long sequences (32K,
// 128K) against a float64 host reference on a sample of rows; GQA ratios 1, 2, 3, 4, 8; left padding; pad
// invariance (bitwise); decode caches NaN outside the rows a sequence may read.
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
    default:  // the weight block types: not activations
      break;
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

Tol decode_tol(DType t) {
  switch (t) {
    case DType::F32:
      return {2e-5, 1e-4};
    case DType::F16:
      return {2e-3, 2e-3};
    case DType::BF16:
      return {1e-2, 1e-2};
    default:  // the weight block types: not activations
      break;
  }
  return {0, 0};
}

// The KV cache of a decode batch: [n_slots, Hkv, max_ctx, D], random (rounded to the storage type) in the rows some
// sequence reads ([starts[b], starts[b] + lens[b]) of slot slots[b], every KV head) and NaN everywhere else, so
// that a kernel touching a row outside its range fails the check. slots[b] = n_slots - 1 - b: not the identity.
struct DecodeCache {
  int64_t n_slots, Hkv, max_ctx, D;
  std::vector<int32_t> slots;
  std::vector<float> k, v;
  DeviceBuffer dk, dv;
};

DecodeCache make_decode_cache(int64_t Hkv, int64_t max_ctx, int64_t D, const std::vector<int32_t>& starts,
                              const std::vector<int32_t>& lens, DType t, uint32_t seed) {
  const int64_t B = static_cast<int64_t>(lens.size());
  DecodeCache c{B + 1, Hkv, max_ctx, D, std::vector<int32_t>(B), {}, {}, {}, {}};
  const size_t n = c.n_slots * Hkv * max_ctx * D;
  c.k.assign(n, std::nanf(""));
  c.v.assign(n, std::nanf(""));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t b = 0; b < B; ++b) {
    c.slots[b] = static_cast<int32_t>(c.n_slots - 1 - b);
    for (int64_t h = 0; h < Hkv; ++h) {
      const size_t first = ((c.slots[b] * Hkv + h) * max_ctx + starts[b]) * D, count = lens[b] * D;
      for (size_t i = first; i < first + count; ++i) c.k[i] = round_to(nd(rng), t), c.v[i] = round_to(nd(rng), t);
    }
  }
  c.dk = DeviceBuffer::from(c.k, t);
  c.dv = DeviceBuffer::from(c.v, t);
  return c;
}

// One attention_decode call against the CPU op on `cache` (made for c's Hkv, max_ctx, D, starts, lens); returns
// the kernel the plan chose.
DecodeKernel check_decode(const DecodeCase& c, const DecodeCache& cache, DType t, uint32_t seed) {
  SCOPED_TRACE(std::string(dtype_name(t)) + " B " + std::to_string(c.B) + " H " + std::to_string(c.H) + "/" +
               std::to_string(c.Hkv) + " D " + std::to_string(c.D) + " max_ctx " + std::to_string(c.max_ctx));
  const int64_t q_stride = (c.H + 2 * c.Hkv) * c.D;
  auto q = randn(c.B * q_stride, seed);
  quantize(q, t);
  auto dq = DeviceBuffer::from(q, t);
  auto dslots = DeviceBuffer::ints(cache.slots), dstarts = DeviceBuffer::ints(c.starts);
  auto dlens = DeviceBuffer::ints(c.lens);
  DeviceBuffer dout(c.B * c.H * c.D, t);
  dout.poison();
  const DecodePlan plan = plan_attention_decode(c.B, c.H, c.Hkv, c.D, c.max_ctx, device_sm_count());
  DeviceBuffer ws(plan.workspace_bytes / 4 + 1, DType::F32);
  ws.poison();
  const float scale = 1.f / std::sqrt(static_cast<float>(c.D));
  TESSERA_STATUS_CHECK(attention_decode(dq.get(), q_stride, cache.dk.get(), cache.dv.get(), dslots.i32(), dstarts.i32(),
                                        dlens.i32(), dout.get(), c.B, c.H, c.Hkv, c.D, c.max_ctx, scale, ws.get(),
                                        plan.workspace_bytes, t, nullptr));
  std::vector<float> ref(c.B * c.H * c.D);
  ops::attention_decode(q.data(), q_stride, cache.k.data(), cache.v.data(), ops::DType::F32, cache.slots.data(), 1,
                        c.starts.data(), c.lens.data(), ref.data(), c.B, c.H, c.Hkv, c.D, c.max_ctx, scale);
  EXPECT_TRUE(all_close(dout.download(), ref, decode_tol(t)))
      << (plan.kernel == DecodeKernel::Split ? "split kernel" : "warp-per-head kernel") << ", n_splits "
      << plan.n_splits << " heads/block " << plan.heads_per_block;
  return plan.kernel;
}

DecodeKernel run_decode(const DecodeCase& c, DType t) {
  const DecodeCache cache = make_decode_cache(c.Hkv, c.max_ctx, c.D, c.starts, c.lens, t, 31);
  return check_decode(c, cache, t, 33);
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

// Every head_dim the op takes besides 64/128 runs the warp-per-head kernel; 256 (the split kernel) rides along as
// the control. One batch holds contexts 1, 2, 31, 257, 4099 and an empty sequence, at non-zero starts, for GQA
// 1, 2, 4, 8 over the same cache.
TEST(CudaAttentionDecode, AnyHeadDimMatchesCpu) {
  TESSERA_SKIP_WITHOUT_GPU();
  std::vector<int64_t> dims = {16, 32, 48, 80, 96, 160, 256};
  std::vector<int64_t> ratios = {1, 2, 4, 8};
  std::vector<int32_t> lens = {1, 2, 31, 257, 4099, 0}, starts = {0, 3, 1, 7, 2, 5};
  if (quick()) {
    dims = {16, 96, 160, 256};
    ratios = {1, 8};
    lens = {1, 2, 31, 257, 0};
    starts = {0, 3, 1, 7, 5};
  }
  int64_t max_ctx = 0;
  for (size_t b = 0; b < lens.size(); ++b) max_ctx = std::max<int64_t>(max_ctx, starts[b] + lens[b]);
  max_ctx += 2;  // not a multiple of the key tile; the rows past every range stay NaN
  const int64_t B = static_cast<int64_t>(lens.size()), Hkv = 2;
  std::set<DecodeKernel> seen;
  for (DType t : kAllTypes) {
    for (int64_t D : dims) {
      const DecodeCache cache = make_decode_cache(Hkv, max_ctx, D, starts, lens, t, static_cast<uint32_t>(D));
      for (int64_t ratio : ratios) {
        const DecodeCase c{B, Hkv * ratio, Hkv, D, max_ctx, lens, starts};
        seen.insert(check_decode(c, cache, t, static_cast<uint32_t>(D * 10 + ratio)));
      }
    }
  }
  EXPECT_EQ(seen.size(), 2u) << "both decode kernels must be exercised";
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
  for (int64_t D : {64, 128, 256}) EXPECT_EQ(plan_attention_decode(1, 8, 2, D, 4096, 132).kernel, DecodeKernel::Split);
  // Other head dims: the warp-per-head kernel, one split over all keys, no workspace.
  for (int64_t D : {1, 16, 80, 96, 160, 255}) {
    const DecodePlan p = plan_attention_decode(1, 32, 8, D, 131072, 132);
    EXPECT_EQ(p.kernel, DecodeKernel::WarpPerHead) << "D " << D;
    EXPECT_EQ(p.n_splits, 1);
    EXPECT_EQ(p.chunk, 131072);
    EXPECT_EQ(p.heads_per_block, 1);
    EXPECT_EQ(p.workspace_bytes, 0u);
  }
}

TEST(CudaAttention, RejectsBadArguments) {
  const Status st = attention_decode(nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 8, 3, 64, 128,
                                     0.1f, nullptr, 0, DType::BF16, nullptr);
  EXPECT_NE(st.message.find("'n_kv_heads'"), std::string::npos) << st.message;
  const Status st2 =
      attention_prefill(nullptr, 0, nullptr, nullptr, 0, nullptr, nullptr, 1, 16, 4, 4, 512, 0.1f, DType::F16, nullptr);
  EXPECT_NE(st2.message.find("'head_dim'"), std::string::npos) << st2.message;
  for (int64_t D : {0, 257, 512}) {
    const Status st3 = attention_decode(nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 8, 2, D,
                                        128, 0.1f, nullptr, 0, DType::F16, nullptr);
    EXPECT_NE(st3.message.find("'head_dim'"), std::string::npos) << "D " << D << ": " << st3.message;
  }
}

}  // namespace
}  // namespace tessera::gpu::testing
