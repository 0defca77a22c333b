// tests/kernels/test_cuda_elementwise.cpp — embedding, bias+GELU, SiLU·gate, RoPE, kv_write and linear (cuBLAS)
// on the GPU against the CPU ops; vectorized and scalar branches (dims not a multiple of 8), F32/F16/BF16.
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
