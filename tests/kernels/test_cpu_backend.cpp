// tests/kernels/test_cpu_backend.cpp — the CPU implementation of the op interface (kernels/backend.h): what it adds
// to the kernels/ops.h functions it calls (strided logits blocks, ids outside the embedding table, row copies,
// scratch layout, the norm kinds) and the errors it gives for what the CPU ops cannot take.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"

namespace {

using tessera::ops::CpuBackend;
using tessera::ops::DType;
using tessera::ops::NormKind;
using tessera::ops::Tensor;

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

Tensor view(std::vector<float>& v, int64_t rows, int64_t cols) {
  return Tensor::dense(static_cast<void*>(v.data()), DType::F32, rows, cols);
}

TEST(CpuBackend, LinearIntoAStridedLogitsBlockLeavesTheOtherColumns) {
  CpuBackend be;
  const int64_t m = 3, n = 5, k = 7, stride = 8;
  auto x = randn(m * k, 1), w = randn(n * k, 2);
  std::vector<float> dense(m * n), block(m * stride, -7.0f);
  tessera::ops::linear(x.data(), w.data(), nullptr, dense.data(), m, n, k);
  be.linear(view(x, m, k), view(w, n, k), Tensor{}, Tensor{block.data(), DType::F32, m, n, stride});
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) EXPECT_EQ(block[r * stride + c], dense[r * n + c]) << r << "," << c;
    for (int64_t c = n; c < stride; ++c) EXPECT_EQ(block[r * stride + c], -7.0f);
  }
}

TEST(CpuBackend, EmbeddingGivesZeroRowsForIdsOutsideTheTable) {
  CpuBackend be;
  const int64_t rows = 4, dim = 6;
  auto wte = randn(rows * dim, 3), wpe = randn(10 * dim, 4);
  const std::vector<int32_t> ids = {2, 4, -1, 0}, pos = {0, 1, 2, 9};  // 4 and -1: another rank's tokens
  std::vector<float> out(ids.size() * dim, NAN);
  for (const bool with_pos : {false, true}) {
    be.embedding(ids.data(), pos.data(), view(wte, rows, dim), with_pos ? view(wpe, 10, dim) : Tensor{},
                 view(out, 4, dim));
    for (size_t i = 0; i < ids.size(); ++i)
      for (int64_t d = 0; d < dim; ++d) {
        const float e = ids[i] >= 0 && ids[i] < rows ? wte[ids[i] * dim + d] : 0.0f;
        EXPECT_EQ(out[i * dim + d], e + (with_pos ? wpe[pos[i] * dim + d] : 0.0f)) << i << "," << d;
      }
  }
}

TEST(CpuBackend, NormKindsAreTheOpsNorms) {
  CpuBackend be;
  const int64_t rows = 3, dim = 16;
  auto x = randn(rows * dim, 5), g = randn(dim, 6), b = randn(dim, 7), delta = randn(rows * dim, 8);
  std::vector<float> want(rows * dim), got(rows * dim);
  tessera::ops::rms_norm(x.data(), g.data(), want.data(), rows, dim, 1e-5f);
  be.norm(NormKind::kRms, view(x, rows, dim), view(g, 1, dim), Tensor{}, view(got, rows, dim), 1e-5f);
  EXPECT_EQ(got, want);
  tessera::ops::layer_norm(x.data(), g.data(), b.data(), want.data(), rows, dim, 1e-5f);
  be.norm(NormKind::kLayer, view(x, rows, dim), view(g, 1, dim), view(b, 1, dim), view(got, rows, dim), 1e-5f);
  EXPECT_EQ(got, want);
  auto r1 = x, r2 = x;
  tessera::ops::add_layer_norm(r1.data(), delta.data(), g.data(), b.data(), want.data(), rows, dim, 1e-5f);
  be.add_norm(NormKind::kLayer, view(r2, rows, dim), view(delta, rows, dim), view(g, 1, dim), view(b, 1, dim),
              view(got, rows, dim), 1e-5f);
  EXPECT_EQ(got, want);
  EXPECT_EQ(r2, r1);  // the residual was added in place
}

TEST(CpuBackend, CopyRowsTakesEveryStepthRow) {
  CpuBackend be;
  auto src = randn(12 * 3, 9);
  std::vector<float> dst(3 * 3);
  be.copy_rows(view(src, 12, 3), 3, 4, view(dst, 3, 3));  // rows 3, 7, 11: each group's last column
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(dst[i * 3 + c], src[(3 + i * 4) * 3 + c]);
}

TEST(CpuBackend, ScratchIsAlignedDisjointAndStable) {
  CpuBackend be;
  const size_t sizes[] = {100, 0, 4096, 7};
  void* a[4];
  void* b[4];
  be.scratch(sizes, a);
  be.scratch(sizes, b);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a[i]) % 256, 0u) << i;
    EXPECT_EQ(a[i], b[i]) << "the same sizes give the same addresses";
    if (i > 0) {
      EXPECT_GE(static_cast<char*>(a[i]), static_cast<char*>(a[i - 1]) + std::max<size_t>(sizes[i - 1], 1));
    }
  }
}

// Weights may be of any type (kernels/cpu/quant.h); activations must be fp32.
TEST(CpuBackend, NonF32ActivationsAreRefusedByOpName) {
  CpuBackend be;
  std::vector<float> x(4), w(4), y(4);
  const Tensor half{x.data(), DType::BF16, 2, 2, 2};
  try {
    be.linear(half, view(w, 2, 2), Tensor{}, view(y, 2, 2));
    FAIL() << "a bf16 activation was accepted";
  } catch (const tessera::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cpu backend: linear: x is bf16"), std::string::npos) << e.what();
  }
  try {
    be.norm(tessera::ops::NormKind::kRms, half, view(w, 1, 2), Tensor{}, view(y, 2, 2), 1e-5f);
    FAIL() << "a bf16 norm input was accepted";
  } catch (const tessera::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cpu backend: norm: x is bf16"), std::string::npos) << e.what();
  }
}

// A bf16 weight and a Q8_0 embedding table are read in place: the same result as their fp32 values.
TEST(CpuBackend, TypedWeightsGiveTheResultsOfTheirValues) {
  CpuBackend be;
  const int64_t m = 3, n = 5, k = 64;
  auto x = randn(m * k, 4), wf = randn(n * k, 5);
  std::vector<uint16_t> wb(n * k);
  for (size_t i = 0; i < wb.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &wf[i], 4);
    wb[i] = static_cast<uint16_t>(bits >> 16);
    bits = static_cast<uint32_t>(wb[i]) << 16;
    std::memcpy(&wf[i], &bits, 4);  // the value the bf16 weight holds
  }
  std::vector<float> y_ref(m * n), y(m * n);
  tessera::ops::linear(x.data(), wf.data(), nullptr, y_ref.data(), m, n, k);
  be.linear(view(x, m, k), Tensor::dense(wb.data(), DType::BF16, n, k), Tensor{}, view(y, m, n));
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_ref[i], 1e-4f * (1.0f + std::fabs(y_ref[i])));
  // Q8_0 rows {d = 0.5; q = 0, 1, …, 31} and {d = 0.25; q = −j}: looked up and dequantized; id 2 is not owned.
  std::vector<uint8_t> table(2 * 34);
  const uint16_t half_05 = 0x3800, half_025 = 0x3400;
  std::memcpy(&table[0], &half_05, 2);
  std::memcpy(&table[34], &half_025, 2);
  for (int j = 0; j < 32; ++j) {
    table[2 + j] = static_cast<uint8_t>(j);
    table[36 + j] = static_cast<uint8_t>(static_cast<int8_t>(-j));
  }
  const int32_t ids[3] = {1, 2, 0}, pos[3] = {0, 0, 0};
  std::vector<float> out(3 * 32, 9.0f);
  be.embedding(ids, pos, Tensor::dense(table.data(), DType::Q8_0, 2, 32), Tensor{}, view(out, 3, 32));
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(out[j], -0.25f * j);
    EXPECT_EQ(out[32 + j], 0.0f);
    EXPECT_EQ(out[64 + j], 0.5f * j);
  }
}

}  // namespace
