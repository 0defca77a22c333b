// tests/kernels/test_cpu_ops.cpp — each CPU op against a naive float64 formulation written differently
// (explicit masks, full softmax, explicit rotation matrices), on random non-zero data over many shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "formats/dequant.h"
#include "kernels/cpu/isa.h"
#include "kernels/ops.h"

namespace {

using tessera::ops::attention_decode;
using tessera::ops::attention_prefill;

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& ref, double atol, double rtol) {
  ASSERT_EQ(got.size(), ref.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::abs(got[i] - ref[i]) <= atol + rtol * std::abs(ref[i]))) {
      if (bad++ < 5) ADD_FAILURE() << "element " << i << ": got " << got[i] << ", want " << ref[i];
    }
  }
  EXPECT_EQ(bad, 0u) << "wrong elements out of " << got.size();
}

TEST(CpuOps, LinearMatchesNaive) {
  for (auto [m, n, k] : {std::tuple{1, 7, 5}, {3, 17, 33}, {16, 64, 128}, {5, 1, 9}}) {
    auto x = randn(m * k, 1), w = randn(n * k, 2), b = randn(n, 3);
    std::vector<float> y(m * n, NAN);
    tessera::ops::linear(x.data(), w.data(), b.data(), y.data(), m, n, k);
    std::vector<double> ref(m * n);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double acc = b[j];
        for (int t = 0; t < k; ++t) acc += static_cast<double>(x[i * k + t]) * w[j * k + t];
        ref[i * n + j] = acc;
      }
    expect_close(y, ref, 1e-4, 1e-4);
  }
}

TEST(CpuOps, NormsMatchNaive) {
  for (int dim : {1, 7, 64, 576, 4099}) {
    const int rows = 3;
    auto x = randn(rows * dim, 4, 2.0f), g = randn(dim, 5), bta = randn(dim, 6), delta = randn(rows * dim, 7);
    std::vector<float> y(rows * dim, NAN), y2(rows * dim, NAN), res = x;
    std::vector<double> rms_ref(rows * dim), ln_ref(rows * dim), add_ref(rows * dim);
    for (int r = 0; r < rows; ++r) {
      double ss = 0, mean = 0, var = 0, ss2 = 0;
      for (int c = 0; c < dim; ++c) {
        ss += double(x[r * dim + c]) * x[r * dim + c];
        mean += x[r * dim + c];
        const double s = double(x[r * dim + c]) + delta[r * dim + c];
        ss2 += s * s;
      }
      mean /= dim;
      for (int c = 0; c < dim; ++c) var += (x[r * dim + c] - mean) * (x[r * dim + c] - mean);
      for (int c = 0; c < dim; ++c) {
        rms_ref[r * dim + c] = x[r * dim + c] / std::sqrt(ss / dim + 1e-5) * g[c];
        ln_ref[r * dim + c] = (x[r * dim + c] - mean) / std::sqrt(var / dim + 1e-5) * g[c] + bta[c];
        add_ref[r * dim + c] = (double(x[r * dim + c]) + delta[r * dim + c]) / std::sqrt(ss2 / dim + 1e-5) * g[c];
      }
    }
    tessera::ops::rms_norm(x.data(), g.data(), y.data(), rows, dim, 1e-5f);
    expect_close(y, rms_ref, 1e-5, 1e-5);
    tessera::ops::layer_norm(x.data(), g.data(), bta.data(), y.data(), rows, dim, 1e-5f);
    expect_close(y, ln_ref, 1e-5, 1e-4);
    tessera::ops::add_rms_norm(res.data(), delta.data(), g.data(), y2.data(), rows, dim, 1e-5f);
    expect_close(y2, add_ref, 1e-5, 1e-5);
    for (int i = 0; i < rows * dim; ++i) ASSERT_FLOAT_EQ(res[i], x[i] + delta[i]);
  }
}

TEST(CpuOps, RopeIsARotationByPositionTimesFrequency) {
  const int rows = 4, heads = 3, hd = 8, stride = heads * hd + 5;
  auto x = randn(rows * stride, 8);
  auto y = x;
  std::vector<int32_t> pos = {0, 1, 7, 1000};
  tessera::ops::rope(y.data(), pos.data(), rows, heads, hd, stride, 10000.0f);
  for (int r = 0; r < rows; ++r)
    for (int h = 0; h < heads; ++h)
      for (int d = 0; d < hd / 2; ++d) {
        const double ang = pos[r] * std::pow(10000.0, -2.0 * d / hd);
        const double a = x[r * stride + h * hd + d], b = x[r * stride + h * hd + d + hd / 2];
        EXPECT_NEAR(y[r * stride + h * hd + d], a * std::cos(ang) - b * std::sin(ang), 2e-4);
        EXPECT_NEAR(y[r * stride + h * hd + d + hd / 2], b * std::cos(ang) + a * std::sin(ang), 2e-4);
      }
  for (int r = 0; r < rows; ++r)  // the bytes after the heads are untouched
    for (int c = heads * hd; c < stride; ++c) EXPECT_EQ(y[r * stride + c], x[r * stride + c]);
}

// Full-matrix reference: scores with an explicit causal + pad mask, softmax in double.
std::vector<double> naive_prefill(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                  const std::vector<int32_t>& pad, int B, int L, int H, int KV, int D) {
  std::vector<double> out(static_cast<size_t>(B) * L * H * D, 0.0);
  const double scale = 1.0 / std::sqrt(double(D));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const int kvh = h / (H / KV);
      for (int i = pad[b]; i < L; ++i) {
        std::vector<double> s(L, -INFINITY);
        double mx = -INFINITY;
        for (int j = 0; j < L; ++j) {
          if (j < pad[b] || j > i) continue;
          double dot = 0;
          for (int d = 0; d < D; ++d)
            dot += double(q[((b * L + i) * H + h) * D + d]) * k[((b * L + j) * KV + kvh) * D + d];
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        double den = 0;
        for (int j = 0; j < L; ++j) den += std::isinf(s[j]) ? 0 : std::exp(s[j] - mx);
        for (int j = 0; j < L; ++j) {
          if (std::isinf(s[j])) continue;
          const double p = std::exp(s[j] - mx) / den;
          for (int d = 0; d < D; ++d) out[((b * L + i) * H + h) * D + d] += p * v[((b * L + j) * KV + kvh) * D + d];
        }
      }
    }
  return out;
}

TEST(CpuOps, PrefillAttentionMatchesMaskedSoftmax) {
  struct Case {
    int B, L, H, KV, D;
    std::vector<int32_t> pad;
  };
  for (const Case& c : {Case{1, 1, 2, 2, 8, {0}}, Case{2, 9, 4, 2, 16, {0, 5}}, Case{3, 130, 6, 2, 64, {0, 1, 129}},
                        Case{2, 70, 8, 1, 32, {3, 69}}}) {
    auto q = randn(size_t(c.B) * c.L * c.H * c.D, 10), k = randn(size_t(c.B) * c.L * c.KV * c.D, 11),
         v = randn(size_t(c.B) * c.L * c.KV * c.D, 12);
    std::vector<float> out(q.size(), NAN);
    attention_prefill(q.data(), c.H * c.D, k.data(), v.data(), c.KV * c.D, c.pad.data(), out.data(), c.B, c.L, c.H,
                      c.KV, c.D, 1.0f / std::sqrt(float(c.D)));
    expect_close(out, naive_prefill(q, k, v, c.pad, c.B, c.L, c.H, c.KV, c.D), 1e-5, 1e-4);
  }
}

TEST(CpuOps, PadKeysAreNeverRead) {
  // NaN in every pad column of K and V must not reach any output.
  const int B = 2, L = 12, H = 2, KV = 1, D = 8;
  std::vector<int32_t> pad = {4, 0};
  auto q = randn(B * L * H * D, 20), k = randn(B * L * KV * D, 21), v = randn(B * L * KV * D, 22);
  for (int j = 0; j < pad[0]; ++j)
    for (int d = 0; d < KV * D; ++d) k[j * KV * D + d] = v[j * KV * D + d] = NAN;
  std::vector<float> out(q.size(), 1.0f);
  attention_prefill(q.data(), H * D, k.data(), v.data(), KV * D, pad.data(), out.data(), B, L, H, KV, D, 0.35f);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_FALSE(std::isnan(out[i])) << i;
  for (int i = 0; i < pad[0] * H * D; ++i) ASSERT_EQ(out[i], 0.0f) << "pad query rows are zeros";
}

TEST(CpuOps, DecodeEqualsLastPrefillRowThroughTheCache) {
  // Prefill a group into the cache, then one decode query per sequence over its range must equal the prefill
  // result for a query at that position.
  const int B = 3, L = 40, H = 4, KV = 2, D = 16, max_ctx = 64, slots_n = 5;
  std::vector<int32_t> pad = {0, 7, 39};
  auto q = randn(B * L * H * D, 30), k = randn(B * L * KV * D, 31), v = randn(B * L * KV * D, 32);
  std::vector<float> prefill_out(q.size(), NAN);
  attention_prefill(q.data(), H * D, k.data(), v.data(), KV * D, pad.data(), prefill_out.data(), B, L, H, KV, D, 0.25f);
  std::vector<float> ck(size_t(slots_n) * KV * max_ctx * D, NAN), cv = ck;
  std::vector<int32_t> slot_of_row = {4, 0, 2}, slots(B * L), positions(B * L);
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < L; ++c) {
      slots[b * L + c] = c < pad[b] ? -1 : slot_of_row[b];
      positions[b * L + c] = c < pad[b] ? 0 : c - pad[b];
    }
  tessera::ops::kv_write(k.data(), v.data(), KV * D, slots.data(), positions.data(), B * L, ck.data(), cv.data(), KV,
                         max_ctx, D);
  std::vector<float> qlast(B * H * D), dec(B * H * D, NAN);
  std::vector<int32_t> starts(B, 0), lens(B);
  for (int b = 0; b < B; ++b) {
    std::copy_n(q.begin() + (b * L + L - 1) * H * D, H * D, qlast.begin() + b * H * D);
    lens[b] = L - pad[b];
  }
  attention_decode(qlast.data(), H * D, ck.data(), cv.data(), tessera::ops::DType::F32, slot_of_row.data(), 1,
                   starts.data(), lens.data(), dec.data(), B, H, KV, D, max_ctx, 0.25f);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < H * D; ++i) EXPECT_EQ(dec[b * H * D + i], prefill_out[(b * L + L - 1) * H * D + i]);
}

// A 16-bit KV cache (backend.cpu_kv_dtype): kv_write rounds to nearest even, and decode over it is exactly decode
// over an fp32 cache holding the rounded values (the conversion on read is exact).
TEST(CpuOps, DecodeOverA16BitCacheIsDecodeOverItsRoundedValues) {
  using tessera::ops::DType;
  const int B = 2, H = 4, KV = 2, D = 32, max_ctx = 80, n = 70;
  auto k = randn(n * KV * D, 50, 3.0f), v = randn(n * KV * D, 51, 3.0f), q = randn(B * H * D, 52);
  std::vector<int32_t> slots(n), pos(n);
  for (int t = 0; t < n; ++t) {
    slots[t] = t % B;
    pos[t] = t / B;
  }
  std::vector<int32_t> seq_slots = {0, 1}, starts = {0, 0}, lens = {n / B, n / B};
  for (DType t : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(tessera::ops::dtype_name(t));
    std::vector<uint16_t> ck(size_t(B) * KV * max_ctx * D), cv(ck.size());
    tessera::ops::kv_write(k.data(), v.data(), KV * D, slots.data(), pos.data(), n, ck.data(), cv.data(), t, KV,
                           max_ctx, D);
    std::vector<float> fk(ck.size()), fv(cv.size());
    for (size_t i = 0; i < ck.size(); ++i) {
      fk[i] = t == DType::BF16 ? tessera::formats::bf16_to_fp32(ck[i]) : tessera::formats::fp16_to_fp32(ck[i]);
      fv[i] = t == DType::BF16 ? tessera::formats::bf16_to_fp32(cv[i]) : tessera::formats::fp16_to_fp32(cv[i]);
    }
    // Rounded to nearest: within half a unit in the last place of the type (8 or 11 significant bits).
    const double half_ulp = t == DType::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    for (int tk = 0; tk < n; ++tk)
      for (int h = 0; h < KV; ++h)
        for (int d = 0; d < D; ++d) {
          const float x = k[(tk * KV + h) * D + d];
          const float y = fk[((size_t(slots[tk]) * KV + h) * max_ctx + pos[tk]) * D + d];
          ASSERT_LE(std::fabs(double(y) - x), half_ulp * std::fabs(x) + 6e-8) << x << " -> " << y;
        }
    std::vector<float> got(B * H * D, NAN), ref(B * H * D, NAN);
    tessera::ops::attention_decode(q.data(), H * D, ck.data(), cv.data(), t, seq_slots.data(), 1, starts.data(),
                                   lens.data(), got.data(), B, H, KV, D, max_ctx, 0.2f);
    attention_decode(q.data(), H * D, fk.data(), fv.data(), DType::F32, seq_slots.data(), 1, starts.data(), lens.data(),
                     ref.data(), B, H, KV, D, max_ctx, 0.2f);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], ref[i]) << i;
  }
}

using tessera::ops::Isa;
// Runs a scope on one instruction set, then puts the previous one back.
class IsaScope {
 public:
  explicit IsaScope(Isa isa) : saved_(tessera::ops::active_isa()) { tessera::ops::set_isa(isa); }
  ~IsaScope() { tessera::ops::set_isa(saved_); }

 private:
  Isa saved_;
};

// The paged cache: the same keys scattered over shuffled blocks of 16 tokens give the slot layout's results bit
// for bit, in decode (also from a non-zero start) and in a prefill that reads its keys from the cache — with and
// without a cached prefix, on every instruction set.
TEST(CpuOps, PagedCacheGivesTheSlotLayoutsResultsBitForBit) {
  using tessera::ops::DType;
  const int B = 3, L = 70, H = 6, KV = 2, D = 32, bs = 16, width = (L + bs - 1) / bs, n_blocks = B * width + 3;
  std::vector<int32_t> pad = {0, 9, 69};
  auto q = randn(B * L * H * D, 60), k = randn(B * L * KV * D, 61), v = randn(B * L * KV * D, 62);
  // The slot layout: row b in slot b, positions 0 … L − pad − 1.
  std::vector<float> slot_k(size_t(B) * KV * L * D, NAN), slot_v = slot_k;
  std::vector<int32_t> slots(B * L), pos(B * L), blocks(B * L), rows(B * L);
  // The paged one: blocks handed out in a shuffled order, tables [B, width].
  std::vector<int32_t> ids(n_blocks);
  for (int i = 0; i < n_blocks; ++i) ids[i] = i;
  std::mt19937 rng(7);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> tables(B * width);
  for (int i = 0; i < B * width; ++i) tables[i] = ids[i];
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < L; ++c) {
      const bool is_pad = c < pad[b];
      const int p = is_pad ? 0 : c - pad[b];
      slots[b * L + c] = is_pad ? -1 : b;
      pos[b * L + c] = p;
      blocks[b * L + c] = is_pad ? -1 : tables[b * width + p / bs];
      rows[b * L + c] = p % bs;
    }
  tessera::ops::kv_write(k.data(), v.data(), KV * D, slots.data(), pos.data(), B * L, slot_k.data(), slot_v.data(), KV,
                         L, D);
  std::vector<float> page_k(size_t(n_blocks) * KV * bs * D, NAN), page_v = page_k;
  tessera::ops::kv_write(k.data(), v.data(), KV * D, blocks.data(), rows.data(), B * L, page_k.data(), page_v.data(),
                         KV, bs, D);
  std::vector<int32_t> seq_slots = {0, 1, 2}, zero(B, 0), cached_none(B, 0);
  for (Isa isa : tessera::ops::supported_isas()) {
    IsaScope scope(isa);
    SCOPED_TRACE(tessera::ops::isa_name(isa));
    // Prefill from the activations vs from the paged cache.
    std::vector<float> ref(q.size(), NAN), got(q.size(), NAN);
    attention_prefill(q.data(), H * D, k.data(), v.data(), KV * D, pad.data(), ref.data(), B, L, H, KV, D, 0.3f);
    tessera::ops::attention_prefill_paged(q.data(), H * D, page_k.data(), page_v.data(), DType::F32, tables.data(),
                                          width, pad.data(), cached_none.data(), got.data(), B, L, H, KV, D, bs, 0.3f);
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(got[i], ref[i]) << i;
    // The last 11 positions of row 0 after a cached prefix of L − 11: the same rows of the full prefill.
    const int tail = 11, c0 = L - tail;
    std::vector<float> got_tail(size_t(tail) * H * D, NAN);
    const std::vector<int32_t> pad1 = {0}, cached1 = {c0};
    tessera::ops::attention_prefill_paged(q.data() + size_t(c0) * H * D, H * D, page_k.data(), page_v.data(),
                                          DType::F32, tables.data(), width, pad1.data(), cached1.data(),
                                          got_tail.data(), 1, tail, H, KV, D, bs, 0.3f);
    for (size_t i = 0; i < got_tail.size(); ++i) ASSERT_EQ(got_tail[i], ref[size_t(c0) * H * D + i]) << i;
    // Decode of the last position, and of a window [start, start + len).
    std::vector<float> qlast(B * H * D);
    std::vector<int32_t> lens(B), starts = {3, 17, 0}, wlens(B);
    for (int b = 0; b < B; ++b) {
      std::copy_n(q.begin() + (b * L + L - 1) * H * D, H * D, qlast.begin() + b * H * D);
      lens[b] = L - pad[b];
      wlens[b] = std::max(0, lens[b] - starts[b]);
    }
    for (const auto* st : {&zero, &starts}) {
      const auto& ln = st == &zero ? lens : wlens;
      std::vector<float> d_slot(B * H * D, NAN), d_page(B * H * D, NAN);
      tessera::ops::attention_decode(qlast.data(), H * D, slot_k.data(), slot_v.data(), DType::F32, seq_slots.data(), 1,
                                     st->data(), ln.data(), d_slot.data(), B, H, KV, D, L, 0.3f);
      tessera::ops::attention_decode(qlast.data(), H * D, page_k.data(), page_v.data(), DType::F32, tables.data(),
                                     width, st->data(), ln.data(), d_page.data(), B, H, KV, D, bs, 0.3f);
      for (size_t i = 0; i < d_slot.size(); ++i) ASSERT_EQ(d_page[i], d_slot[i]) << i;
    }
  }
}

TEST(CpuOps, ActivationsMatchFormulas) {
  auto x = randn(3 * 10, 40, 3.0f), b = randn(10, 41);
  auto y = x;
  tessera::ops::add_bias_gelu(y.data(), b.data(), 3, 10);
  for (int i = 0; i < 30; ++i) {
    const double u = double(x[i]) + b[i % 10];
    EXPECT_NEAR(y[i], 0.5 * u * (1 + std::tanh(std::sqrt(2 / M_PI) * (u + 0.044715 * u * u * u))), 1e-5);
  }
  auto gu = randn(2 * 2 * 6, 42, 3.0f);
  std::vector<float> o(2 * 6, NAN);
  tessera::ops::silu_mul(gu.data(), o.data(), 2, 6);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 6; ++c) {
      const double g = gu[r * 12 + c], u = gu[r * 12 + 6 + c];
      EXPECT_NEAR(o[r * 6 + c], g / (1 + std::exp(-g)) * u, 1e-5);
    }
}

}  // namespace
