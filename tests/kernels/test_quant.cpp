// tests/kernels/test_quant.cpp — the typed-weight kernels (kernels/cpu/quant.h) on every instruction set this CPU
// has, every weight type, and shapes with tails: dequantized rows equal formats/dequant.h's (the reader that is
// itself checked bit for bit against the PyPI gguf package), and products equal a float64 dot product of those
// values within fp32 accumulation error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "formats/dequant.h"
#include "kernels/cpu/quant.h"

namespace {

using tessera::ops::DType;
using tessera::ops::Isa;
using tessera::ops::Tensor;
namespace ops = tessera::ops;

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                        DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q6_K};

// The file readers' type of the same name (formats/tensor_source.h), if the readers have one.
std::optional<tessera::formats::DType> formats_type(DType t) {
  std::string want = ops::dtype_name(t);
  for (char& c : want) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (int i = 0; i < 32; ++i) {
    const auto f = static_cast<tessera::formats::DType>(i);
    if (want == tessera::formats::dtype_name(f)) return f;
  }
  return std::nullopt;
}

// The types both the kernels and the readers know (the reference of each is the reader's dequantizer).
std::vector<DType> types_with_reference() {
  std::vector<DType> v;
  for (DType t : kTypes) {
    if (formats_type(t)) {
      v.push_back(t);
    } else {
      std::printf("no reader for %s: its kernels are not checked here\n", ops::dtype_name(t));
    }
  }
  return v;
}

// A finite fp16 with an exponent in [e0, e1] (2^(e−15)), random sign and mantissa.
uint16_t random_half(std::mt19937& rng, int e0, int e1) {
  const uint32_t sign = rng() & 1, exp = static_cast<uint32_t>(e0) + rng() % static_cast<uint32_t>(e1 - e0 + 1),
                 man = rng() & 0x3ff;
  return static_cast<uint16_t>((sign << 15) | (exp << 10) | man);
}
void put_half(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }

// n rows of k values of type t: random bytes, with every scale a moderate finite fp16.
std::vector<uint8_t> random_weights(DType t, int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t row = ops::dtype_nbytes(t, k);
  std::vector<uint8_t> b(row * static_cast<size_t>(n));
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  const int64_t bb = ops::block_bytes(t), blocks = static_cast<int64_t>(b.size()) / bb;
  for (int64_t i = 0; i < blocks; ++i) {
    uint8_t* p = b.data() + i * bb;
    switch (t) {
      case DType::F32: {
        const float f = std::normal_distribution<float>(0.0f, 0.5f)(rng);
        std::memcpy(p, &f, 4);
        break;
      }
      case DType::F16:
        put_half(p, random_half(rng, 10, 16));
        break;
      case DType::BF16: {
        const float f = std::normal_distribution<float>(0.0f, 0.5f)(rng);
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        put_half(p, static_cast<uint16_t>(bits >> 16));
        break;
      }
      case DType::Q8_0:
      case DType::Q4_0:
        put_half(p, random_half(rng, 5, 12));
        break;
      case DType::Q4_1:
      case DType::Q4_K:
        put_half(p, random_half(rng, 5, 12));
        put_half(p + 2, random_half(rng, 5, 12));
        break;
      case DType::Q6_K:
        put_half(p + 208, random_half(rng, 3, 8));
        break;
    }
  }
  return b;
}

std::vector<float> reference_rows(DType t, const std::vector<uint8_t>& w, int64_t n, int64_t k) {
  std::vector<float> out(static_cast<size_t>(n * k));
  const size_t row = ops::dtype_nbytes(t, k);
  for (int64_t r = 0; r < n; ++r)
    tessera::formats::dequantize_row(*formats_type(t), w.data() + r * row, out.data() + r * k, k);
  return out;
}

class IsaGuard {
 public:
  explicit IsaGuard(Isa isa) : saved_(ops::active_isa()) { ops::set_isa(isa); }
  ~IsaGuard() { ops::set_isa(saved_); }

 private:
  Isa saved_;
};

TEST(Quant, TheMachinesInstructionSetsAreListed) {
  const auto isas = ops::supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::kGeneric);
  EXPECT_EQ(isas.back(), ops::best_isa());
  std::string names;
  for (Isa i : isas) names += std::string(ops::isa_name(i)) + " ";
  std::printf("instruction sets on this machine: %s(active: %s)\n", names.c_str(), ops::isa_name(ops::active_isa()));
  for (Isa i : {Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAvx512Vnni}) {
    if (!ops::isa_supported(i)) {
      EXPECT_THROW(ops::set_isa(i), tessera::Error) << ops::isa_name(i);
    }
  }
}

TEST(Quant, DequantizedRowsEqualTheFileReadersOnEveryPath) {
  for (Isa isa : ops::supported_isas()) {
    IsaGuard guard(isa);
    for (DType t : types_with_reference()) {
      const int64_t bs = ops::block_size(t);
      for (int64_t k : {bs == 1 ? int64_t{37} : bs, bs == 1 ? int64_t{96} : 3 * bs, int64_t{768}}) {
        SCOPED_TRACE(std::string(ops::isa_name(isa)) + " " + ops::dtype_name(t) + " k=" + std::to_string(k));
        const int64_t n = 5;
        auto w = random_weights(t, n, k, 7);
        const auto ref = reference_rows(t, w, n, k);
        std::vector<float> got(static_cast<size_t>(n * k));
        ops::dequantize_rows(Tensor::dense(w.data(), t, n, k), 0, n, got.data());
        int wrong = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
          // One rounding apart at most: d·q + m may be fused into one FMA here and not in the reader.
          const float tol = 1e-6f * std::fabs(ref[i]) + 1e-9f;
          if (!(std::fabs(got[i] - ref[i]) <= tol) && wrong++ < 3)
            ADD_FAILURE() << "[" << i << "] got " << got[i] << ", reader " << ref[i];
        }
        EXPECT_EQ(wrong, 0);
      }
    }
  }
}

// Both regimes: rows of x up to the small-batch limit (every weight row decoded once for all of them, the decode
// batch) and past it (the dequantized-panel GEMM of prefill); output rows not a multiple of the 16-row chunk.
TEST(Quant, ProductsEqualAFloat64ReferenceOnEveryPathTypeAndShape) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (DType t : types_with_reference()) {
    const int64_t bs = ops::block_size(t);
    const int64_t k = bs == 1 ? 75 : (bs == 32 ? 160 : 512), n = 37;
    auto wb = random_weights(t, n, k, 11);
    const auto wf = reference_rows(t, wb, n, k);
    std::vector<float> bias(static_cast<size_t>(n));
    for (auto& b : bias) b = nd(rng);
    for (int64_t m : {1, 2, 3, 4, 5, 8, 16, 17, 40}) {
      std::vector<float> x(static_cast<size_t>(m * k));
      for (auto& v : x) v = nd(rng);
      for (Isa isa : ops::supported_isas()) {
        IsaGuard guard(isa);
        SCOPED_TRACE(std::string(ops::isa_name(isa)) + " " + ops::dtype_name(t) + " m=" + std::to_string(m));
        const int64_t ldy = n + 3;
        std::vector<float> y(static_cast<size_t>(m * ldy), -5.0f);
        ops::linear_typed(x.data(), m, Tensor::dense(wb.data(), t, n, k), bias.data(), y.data(), ldy);
        int wrong = 0;
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double ref = bias[j], mag = std::fabs(bias[j]);
            for (int64_t c = 0; c < k; ++c) {
              ref += static_cast<double>(x[i * k + c]) * wf[j * k + c];
              mag += std::fabs(static_cast<double>(x[i * k + c]) * wf[j * k + c]);
            }
            const double got = y[i * ldy + j];
            if (!(std::fabs(got - ref) <= 1e-5 * mag + 1e-6) && wrong++ < 3)
              ADD_FAILURE() << "y[" << i << "," << j << "] = " << got << ", float64 " << ref;
          }
          for (int64_t j = n; j < ldy; ++j) EXPECT_EQ(y[i * ldy + j], -5.0f) << "column past n written";
        }
        EXPECT_EQ(wrong, 0);
      }
    }
  }
}

// x quantized as quant.h's kInt8 mode says (fp32 arithmetic): d = max|x| / 127 per 32 values, q = nearbyint(x / d).
std::vector<double> int8_values(const std::vector<float>& x) {
  std::vector<double> out(x.size());
  constexpr size_t G = ops::detail::kInt8Group;
  for (size_t g = 0; g < x.size(); g += G) {
    float amax = 0.0f;
    for (size_t i = g; i < g + G; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f, inv = d != 0.0f ? 1.0f / d : 0.0f;
    for (size_t i = g; i < g + G; ++i) out[i] = static_cast<double>(d) * std::nearbyint(x[i] * inv);
  }
  return out;
}

// The int8 mode on every path: the int32 sums are exact, so the result equals a float64 product of the quantized
// activations and the exact weights within fp32 accumulation error; and it stays within the quantization bound of
// the fp32 result: each value of x moves by at most half its group's step d, so |Δy| ≤ Σ |w|·d / 2.
TEST(Quant, Int8ActivationProductsEqualAFloat64ReferenceOfTheQuantizedRowsOnEveryPath) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q6_K}) {
    const int64_t k = ops::block_size(t) == 32 ? 160 : 768, n = 37, kGroup = ops::detail::kInt8Group;
    auto wb = random_weights(t, n, k, 13);
    const auto wf = reference_rows(t, wb, n, k);
    std::vector<float> bias(static_cast<size_t>(n));
    for (auto& b : bias) b = nd(rng);
    for (int64_t m : {1, 3, 8, 15, 16, 17, 40, 70}) {
      std::vector<float> x(static_cast<size_t>(m * k));
      for (auto& v : x) v = nd(rng) * (rng() % 8 == 0 ? 20.0f : 1.0f);  // some outliers, as activations have
      if (m > 2) std::fill(x.begin() + k, x.begin() + k + 32, 0.0f);    // all-zero groups (d = 0)
      const auto xq = int8_values(x);
      for (Isa isa : ops::supported_isas()) {
        IsaGuard guard(isa);
        SCOPED_TRACE(std::string(ops::isa_name(isa)) + " " + ops::dtype_name(t) + " m=" + std::to_string(m));
        const int64_t ldy = n + 3;
        std::vector<float> y(static_cast<size_t>(m * ldy), -5.0f), y32(y);
        const Tensor w = Tensor::dense(wb.data(), t, n, k);
        ops::linear_typed(x.data(), m, w, bias.data(), y.data(), ldy, ops::Activations::kInt8);
        ops::linear_typed(x.data(), m, w, bias.data(), y32.data(), ldy, ops::Activations::kF32);
        int wrong = 0, far = 0;
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double ref = bias[j], mag = std::fabs(bias[j]), bound = 0.0;
            for (int64_t c = 0; c < k; ++c) {
              ref += xq[i * k + c] * wf[j * k + c];
              mag += std::fabs(static_cast<double>(x[i * k + c]) * wf[j * k + c]);
              float amax = 0.0f;
              const int64_t g0 = c / kGroup * kGroup;
              for (int64_t e = g0; e < g0 + kGroup; ++e) amax = std::max(amax, std::fabs(x[i * k + e]));
              bound += std::fabs(wf[j * k + c]) * amax / 127.0 / 2.0;
            }
            const double got = y[i * ldy + j];
            if (!(std::fabs(got - ref) <= 1e-5 * mag + 1e-6) && wrong++ < 3)
              ADD_FAILURE() << "y[" << i << "," << j << "] = " << got << ", float64 of the int8 rows " << ref;
            if (!(std::fabs(got - y32[i * ldy + j]) <= 1.001 * bound + 2e-5 * mag + 1e-6) && far++ < 3)
              ADD_FAILURE() << "y[" << i << "," << j << "] = " << got << ", fp32 mode " << y32[i * ldy + j];
          }
          for (int64_t j = n; j < ldy; ++j) EXPECT_EQ(y[i * ldy + j], -5.0f) << "column past n written";
        }
        EXPECT_EQ(wrong, 0);
        EXPECT_EQ(far, 0);
      }
    }
  }
}

TEST(Quant, AWeightOfPartialBlocksIsRefused) {
  std::vector<uint8_t> w(1024);
  std::vector<float> x(40), y(4);
  EXPECT_THROW(ops::linear_typed(x.data(), 1, Tensor::dense(w.data(), DType::Q4_1, 2, 40), nullptr, y.data(), 2),
               tessera::Error);
}

}  // namespace
