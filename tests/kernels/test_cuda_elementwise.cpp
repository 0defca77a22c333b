// tests/kernels/test_cuda_elementwise.cpp — embedding, bias+GELU, SiLU·gate, RoPE, kv_write and linear (cuBLAS)
// on the GPU against the CPU ops; vectorized and scalar branches (dims not a multiple of 8), F32/F16/BF16;
// convert_from_f32 bitwise against a host round-to-nearest-even reference.
#include <algorithm>

#include "kernels/ops.h"
#include "tests/kernels/test_cuda_util.h"

namespace tessera::gpu::testing {
namespace {

Tol elem_tol(DType t) {
  switch (t) {
    case DType::F32:
      return {1e-6, 1e-5};
    case DType::F16:
      return {1e-3, 2e-3};
    case DType::BF16:
      return {1e-2, 1e-2};
    default:  // the weight block types: not activations
      break;
  }
  return {0, 0};
}

TEST(CudaElementwise, Embedding) {
  TESSERA_SKIP_WITHOUT_GPU();
  for (DType t : kAllTypes) {
    for (int64_t dim : {576, 100, 12288}) {
      for (bool learned_pos : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " dim " + std::to_string(dim) + " wpe " +
                     std::to_string(learned_pos));
        const int64_t vocab = 50, n_pos = 40, n = 37;
        auto wte = randn(vocab * dim, 1), wpe = randn(n_pos * dim, 2);
        quantize(wte, t), quantize(wpe, t);
        std::vector<int32_t> ids(n), pos(n);
        std::mt19937 rng(3);
        for (int64_t i = 0; i < n; ++i) ids[i] = rng() % vocab, pos[i] = rng() % n_pos;
        auto dids = DeviceBuffer::ints(ids), dpos = DeviceBuffer::ints(pos);
        auto dwte = DeviceBuffer::from(wte, t), dwpe = DeviceBuffer::from(wpe, t);
        DeviceBuffer dout(n * dim, t);
        dout.poison();
        TESSERA_STATUS_CHECK(embedding(dids.i32(), dpos.i32(), dwte.get(), learned_pos ? dwpe.get() : nullptr,
                                       dout.get(), n, dim, t, nullptr));
        std::vector<float> ref(n * dim);
        ops::embedding(ids.data(), pos.data(), wte.data(), learned_pos ? wpe.data() : nullptr, ref.data(), n, dim);
        EXPECT_TRUE(all_close(dout.download(), ref, elem_tol(t)));
      }
    }
  }
}

TEST(CudaElementwise, BiasGeluAndSiluMul) {
  TESSERA_SKIP_WITHOUT_GPU();
  for (DType t : kAllTypes) {
    for (int64_t cols : {3072, 100, 49152}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " cols " + std::to_string(cols));
      const int64_t rows = cols > 10000 ? 3 : 17;
      auto x = randn(rows * cols, 4, 2.f), bias = randn(cols, 5);
      quantize(x, t), quantize(bias, t);
      auto dx = DeviceBuffer::from(x, t), db = DeviceBuffer::from(bias, t);
      TESSERA_STATUS_CHECK(add_bias_gelu(dx.get(), db.get(), rows, cols, t, nullptr));
      auto ref = x;
      ops::add_bias_gelu(ref.data(), bias.data(), rows, cols);
      EXPECT_TRUE(all_close(dx.download(), ref, elem_tol(t)));

      auto gu = randn(rows * 2 * cols, 6, 2.f);
      quantize(gu, t);
      auto dgu = DeviceBuffer::from(gu, t);
      DeviceBuffer dout(rows * cols, t);
      dout.poison();
      TESSERA_STATUS_CHECK(silu_mul(dgu.get(), dout.get(), rows, cols, t, nullptr));
      std::vector<float> sref(rows * cols);
      ops::silu_mul(gu.data(), sref.data(), rows, cols);
      EXPECT_TRUE(all_close(dout.download(), sref, elem_tol(t)));
    }
  }
}

TEST(CudaElementwise, RopeRotateHalf) {
  TESSERA_SKIP_WITHOUT_GPU();
  for (DType t : kAllTypes) {
    for (auto [n_heads, head_dim, extra] : {std::tuple{9, 64, 384}, {4, 128, 0}, {3, 96, 6}}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " heads " + std::to_string(n_heads) + " hd " +
                   std::to_string(head_dim));
      const int64_t rows = 29, stride = n_heads * head_dim + extra;  // extra: the K/V part of a fused QKV row
      auto x = randn(rows * stride, 7);
      quantize(x, t);
      std::vector<int32_t> pos(rows);
      std::mt19937 rng(8);
      for (auto& p : pos) p = rng() % 4096;
      auto dx = DeviceBuffer::from(x, t), dpos = DeviceBuffer::ints(pos);
      TESSERA_STATUS_CHECK(rope(dx.get(), dpos.i32(), rows, n_heads, head_dim, stride, 10000.f, t, nullptr));
      auto ref = x;
      ops::rope(ref.data(), pos.data(), rows, n_heads, head_dim, stride, 10000.f);
      // F32: sincosf on the device and std::sin/cos differ by an ulp of the angle's result.
      const Tol tol = t == DType::F32 ? Tol{2e-5, 2e-5} : elem_tol(t);
      EXPECT_TRUE(all_close(dx.download(), ref, tol));
    }
  }
}

TEST(CudaElementwise, KvWriteSkipsPadColumns) {
  TESSERA_SKIP_WITHOUT_GPU();
  for (DType t : kAllTypes) {
    for (int64_t head_dim : {64, 128, 36}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " hd " + std::to_string(head_dim));
      const int64_t n_kv = 3, max_ctx = 50, n_slots = 4, n_tokens = 20, stride = (9 + 2 * n_kv) * head_dim;
      auto k = randn(n_tokens * stride, 9), v = randn(n_tokens * stride, 10);
      quantize(k, t), quantize(v, t);
      std::vector<int32_t> slots(n_tokens), positions(n_tokens);
      for (int64_t i = 0; i < n_tokens; ++i) {
        slots[i] = i % 5 == 0 ? -1 : static_cast<int32_t>(i % n_slots);
        positions[i] = static_cast<int32_t>(i * 2 + 1);
      }
      const size_t cache_n = n_slots * n_kv * max_ctx * head_dim;
      auto cache_init = randn(cache_n, 11);
      quantize(cache_init, t);
      auto dk = DeviceBuffer::from(k, t), dv = DeviceBuffer::from(v, t);
      auto dck = DeviceBuffer::from(cache_init, t), dcv = DeviceBuffer::from(cache_init, t);
      auto ds = DeviceBuffer::ints(slots), dp = DeviceBuffer::ints(positions);
      // K and V of a fused QKV row: k at column 9 * head_dim, v after it.
      const size_t esz = dtype_size(t);
      TESSERA_STATUS_CHECK(kv_write(static_cast<char*>(dk.get()) + 9 * head_dim * esz,
                                    static_cast<char*>(dv.get()) + (9 + n_kv) * head_dim * esz, stride, ds.i32(),
                                    dp.i32(), n_tokens, dck.get(), dcv.get(), n_kv, max_ctx, head_dim, t, nullptr));
      auto rk = cache_init, rv = cache_init;
      ops::kv_write(k.data() + 9 * head_dim, v.data() + (9 + n_kv) * head_dim, stride, slots.data(), positions.data(),
                    n_tokens, rk.data(), rv.data(), n_kv, max_ctx, head_dim);
      EXPECT_TRUE(all_close(dck.download(), rk, {0, 0}));
      EXPECT_TRUE(all_close(dcv.download(), rv, {0, 0}));
    }
  }
}

// x rounded to nearest even in a binary format with `mant` stored mantissa bits, normal exponents emin … emax,
// subnormals below emin and infinity past the largest finite value: exact double arithmetic (a power-of-two
// quantum, nearbyint in the default ties-to-even mode), independent of the CUDA intrinsics the kernel uses.
float round_nearest_even(float x, int mant, int emin, int emax) {
  if (!std::isfinite(x) || x == 0.f) return x;
  int e = 0;
  std::frexp(x, &e);  // |x| = f · 2^e, f in [0.5, 1): the leading bit weighs 2^(e − 1)
  const double quantum = std::ldexp(1.0, std::max(e - 1, emin) - mant);
  const double r = std::nearbyint(static_cast<double>(x) / quantum) * quantum;  // keeps the sign of a zero
  const double max_finite = std::ldexp(2.0 - std::ldexp(1.0, -mant), emax);
  return std::abs(r) > max_finite ? std::copysign(INFINITY, x) : static_cast<float>(r);
}

float host_convert(float x, DType t) {
  switch (t) {
    case DType::F32:
      return x;
    case DType::F16:
      return round_nearest_even(x, 10, -14, 15);
    case DType::BF16:
      return round_nearest_even(x, 7, -126, 127);
    default:  // the weight block types: not activations
      break;
  }
  return x;
}

// Bitwise (the sign of zero included); a NaN must stay a NaN, and an F32 NaN keep its bits.
::testing::AssertionResult same_values(const std::vector<float>& got, const std::vector<float>& src, size_t first,
                                       DType t) {
  size_t bad = 0;
  std::string msg;
  for (size_t i = 0; i < src.size(); ++i) {
    const float want = host_convert(src[i], t), g = got[first + i];
    const bool ok = std::isnan(want) && t != DType::F32 ? std::isnan(g) : std::memcmp(&want, &g, 4) == 0;
    if (!ok && bad++ < 3)
      msg += " [" + std::to_string(i) + "] src " + std::to_string(src[i]) + " got " + std::to_string(g) + " want " +
             std::to_string(want) + ";";
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << src.size() << " wrong:" << msg;
}

// Ties of both formats (to even, down and up), values just past a tie, fp16 subnormals and overflow, bf16
// subnormals, the float extremes, signed zeros, infinities, NaN; then random bit patterns (every exponent) and
// normals of scales 2^-30 … 2^30.
std::vector<float> convert_inputs(size_t n) {
  std::vector<float> v = {
      // fp16: ties to even (down, up), just past a tie, the largest finite, overflow, subnormals and their ties
      1.f + 0x1p-11f, 1.f + 3 * 0x1p-11f, 2049.f, 2051.f, -2049.f, 1.f + 0x1p-11f + 0x1p-20f, 65504.f, 65519.f, 65520.f,
      -65520.f, 70000.f, 0x1p-24f, 0x1p-25f, 3 * 0x1p-25f, 0x1p-25f * 1.0001f, -0x1p-26f, 6.1e-5f,
      // bf16: ties, just past a tie, the largest finite, float max (overflows), subnormals and their ties
      1.f + 0x1p-8f, 1.f + 3 * 0x1p-8f, 1.f + 0x1p-8f + 0x1p-16f, -(1.f + 0x1p-8f), 3.3895314e38f, 3.4028235e38f,
      -3.4028235e38f, 0x1p-130f, 0x1p-133f, 0x1p-134f, 3 * 0x1p-134f, 1e-45f, -1e-40f, 1.17549435e-38f,
      // both: zeros, infinities, NaN, ordinary values
      0.f, -0.f, INFINITY, -INFINITY, std::nanf(""), 0.1f, -3.14159265f, 1e-3f, 12345.678f};
  std::mt19937 rng(17);
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> sc(-30, 30);
  for (size_t i = v.size(); i < n; ++i) {
    if (i % 2 == 0) {
      uint32_t bits = static_cast<uint32_t>(rng());
      float x;
      std::memcpy(&x, &bits, 4);
      v.push_back(x);
    } else {
      v.push_back(std::ldexp(nd(rng), sc(rng)));
    }
  }
  v.resize(n);
  return v;
}

// convert_from_f32: fp32 copied bit for bit, fp16 / bf16 rounded to nearest even, checked against a host
// reference written from the formats' definitions. Lengths that are not a multiple of the 4-element vector,
// the scalar path (misaligned pointers), and nothing written outside [dst, dst + n).
TEST(CudaConvert, FromF32RoundsToNearestEven) {
  TESSERA_SKIP_WITHOUT_GPU();
  std::vector<size_t> lengths = {1, 3, 5, 4003, (size_t{1} << 20) + 7};
  if (!quick()) lengths.push_back(size_t{67108871});  // more 4-vectors than 65535 blocks × 256 threads: grid stride
  for (size_t n : lengths) {
    const std::vector<float> src = convert_inputs(n);
    for (DType t : kAllTypes) {
      for (size_t offset : {size_t{0}, size_t{1}}) {  // offset 1: neither pointer 16-byte aligned, scalar kernel
        if (offset == 1 && n > 10000) continue;
        SCOPED_TRACE(std::string(dtype_name(t)) + " n " + std::to_string(n) + " offset " + std::to_string(offset));
        std::vector<float> padded(offset, 0.f);
        padded.insert(padded.end(), src.begin(), src.end());
        auto dsrc = DeviceBuffer::from(padded, DType::F32);
        DeviceBuffer ddst(n + offset + 2, t);
        ddst.poison();
        char* dst = static_cast<char*>(ddst.get()) + offset * dtype_size(t);
        TESSERA_STATUS_CHECK(
            convert_from_f32(static_cast<const float*>(dsrc.get()) + offset, dst, static_cast<int64_t>(n), t, nullptr));
        const std::vector<float> got = ddst.download();
        EXPECT_TRUE(same_values(got, src, offset, t));
        for (size_t i : {size_t{0}, offset + n, offset + n + 1}) {
          if (i >= offset && i < offset + n) continue;
          EXPECT_TRUE(std::isnan(got[i])) << "element " << i << " was written";
        }
      }
    }
  }
}

TEST(CudaConvert, RejectsBadArguments) {
  const Status st = convert_from_f32(nullptr, nullptr, -1, DType::F16, nullptr);
  EXPECT_NE(st.message.find("'n'"), std::string::npos) << st.message;
  const Status st2 = convert_from_f32(nullptr, nullptr, 8, DType::BF16, nullptr);
  EXPECT_NE(st2.message.find("'src'"), std::string::npos) << st2.message;
  EXPECT_TRUE(convert_from_f32(nullptr, nullptr, 0, DType::F32, nullptr).ok());
}

TEST(CudaLinear, MatchesCpuWithBiasAndTails) {
  TESSERA_SKIP_WITHOUT_GPU();
  for (DType t : kAllTypes) {
    for (auto [m, n, k] :
         {std::tuple{1, 7, 5}, {3, 17, 33}, {16, 576, 576}, {5, 1536, 576}, {4, 3072, 768}, {64, 1000, 1000}}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " m " + std::to_string(m) + " n " + std::to_string(n) + " k " +
                   std::to_string(k));
      auto x = randn(m * k, 12), w = randn(n * k, 13, 0.05f), b = randn(n, 14);
      quantize(x, t), quantize(w, t), quantize(b, t);
      auto dx = DeviceBuffer::from(x, t), dw = DeviceBuffer::from(w, t), db = DeviceBuffer::from(b, t);
      DeviceBuffer dy(m * n, t);
      dy.poison();
      TESSERA_STATUS_CHECK(linear(dx.get(), dw.get(), db.get(), dy.get(), m, n, k, t, nullptr));
      std::vector<float> ref(m * n);
      ops::linear(x.data(), w.data(), b.data(), ref.data(), m, n, k);
      const Tol tol = t == DType::F32 ? Tol{1e-4, 1e-4} : t == DType::F16 ? Tol{3e-3, 3e-3} : Tol{2e-2, 1e-2};
      EXPECT_TRUE(all_close(dy.download(), ref, tol));
    }
  }
}

}  // namespace
}  // namespace tessera::gpu::testing
