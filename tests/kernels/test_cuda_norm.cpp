// tests/kernels/test_cuda_norm.cpp — RMSNorm / LayerNorm (+ fused residual add) on the GPU against the CPU ops,
// hidden 576 … 65536 and beyond, every dispatch branch (register-cached NV 1/2/4/8, vectorized loop, scalar
// loop for odd sizes and unaligned pointers), F32/F16/BF16; the same for the mixed-precision ops (fp32 residual
// stream) and the fp32-output embedding that starts that stream.
#include <set>

#include "kernels/cuda/norm.cuh"
#include "kernels/ops.h"
#include "tests/kernels/test_cuda_util.h"

namespace tessera::gpu::testing {
namespace {

Tol norm_tol(DType t) {
  switch (t) {
    case DType::F32:
      return {2e-5, 2e-5};
    case DType::F16:
      return {4e-3, 4e-3};
    case DType::BF16:
      return {3e-2, 1.6e-2};
    default:  // the weight block types: not activations
      break;
  }
  return {0, 0};
}

std::vector<int64_t> dims() {
  if (quick()) return {576, 1000, 12288, 65536, 65544};
  return {1, 7, 576, 768, 1000, 2048, 4096, 5120, 8192, 12288, 16384, 24576, 32768, 49152, 65536, 65544, 65537, 98304};
}

enum class Op { kRms, kAddRms, kLayer, kAddLayer };

void run_case(Op op, DType t, int64_t rows, int64_t dim, int64_t misalign, std::set<NormPath>* seen) {
  SCOPED_TRACE("op " + std::to_string(static_cast<int>(op)) + " dtype " + dtype_name(t) + " rows " +
               std::to_string(rows) + " dim " + std::to_string(dim) + " misalign " + std::to_string(misalign));
  const uint32_t seed = static_cast<uint32_t>(dim * 31 + rows + static_cast<int>(op) * 7 + misalign);
  // A residual stream with a large common offset: catches a one-pass variance that cancels.
  auto x = randn(rows * dim, seed, 1.f, 3.f), delta = randn(rows * dim, seed + 1, 0.5f);
  auto gamma = randn(dim, seed + 2, 0.2f, 1.f), beta = randn(dim, seed + 3, 0.1f);
  quantize(x, t), quantize(delta, t), quantize(gamma, t), quantize(beta, t);
  const float eps = 1e-5f;
  // misalign > 0: every tensor starts `misalign` elements into its buffer (the scalar path).
  auto with_offset = [&](const std::vector<float>& v) {
    std::vector<float> p(misalign, 0.f);
    p.insert(p.end(), v.begin(), v.end());
    return DeviceBuffer::from(p, t);
  };
  auto at = [&](const DeviceBuffer& b) { return static_cast<char*>(b.get()) + misalign * dtype_size(t); };
  DeviceBuffer dx = with_offset(x), dd = with_offset(delta), dg = with_offset(gamma), db = with_offset(beta);
  DeviceBuffer dy(rows * dim + misalign, t);
  dy.poison();
  seen->insert(norm_path(dim, t, misalign == 0));

  std::vector<float> y_ref(rows * dim), r_ref = x;
  switch (op) {
    case Op::kRms:
      TESSERA_STATUS_CHECK(rms_norm(at(dx), at(dg), at(dy), rows, dim, eps, t, nullptr));
      ops::rms_norm(x.data(), gamma.data(), y_ref.data(), rows, dim, eps);
      break;
    case Op::kAddRms:
      TESSERA_STATUS_CHECK(add_rms_norm(at(dx), at(dd), at(dg), at(dy), rows, dim, eps, t, nullptr));
      ops::add_rms_norm(r_ref.data(), delta.data(), gamma.data(), y_ref.data(), rows, dim, eps);
      break;
    case Op::kLayer:
      TESSERA_STATUS_CHECK(layer_norm(at(dx), at(dg), at(db), at(dy), rows, dim, eps, t, nullptr));
      ops::layer_norm(x.data(), gamma.data(), beta.data(), y_ref.data(), rows, dim, eps);
      break;
    case Op::kAddLayer:
      TESSERA_STATUS_CHECK(add_layer_norm(at(dx), at(dd), at(dg), at(db), at(dy), rows, dim, eps, t, nullptr));
      ops::add_layer_norm(r_ref.data(), delta.data(), gamma.data(), beta.data(), y_ref.data(), rows, dim, eps);
      break;
  }
  auto y = dy.download();
  y.erase(y.begin(), y.begin() + misalign);
  EXPECT_TRUE(all_close(y, y_ref, norm_tol(t)));
  if (op == Op::kAddRms || op == Op::kAddLayer) {
    auto r = dx.download();
    r.erase(r.begin(), r.begin() + misalign);
    // The stored residual is the sum rounded once to the storage type.
    const Tol rt = t == DType::F32 ? Tol{1e-6, 1e-6} : t == DType::F16 ? Tol{1e-3, 1e-3} : Tol{1e-2, 8e-3};
    EXPECT_TRUE(all_close(r, r_ref, rt));
  }
}

TEST(CudaNorm, MatchesCpuOverHiddenSizesAndBranches) {
  TESSERA_SKIP_WITHOUT_GPU();
  std::set<NormPath> seen;
  for (DType t : kAllTypes) {
    for (int64_t dim : dims()) {
      const int64_t rows = dim >= 16384 ? 3 : 5;
      for (Op op : {Op::kRms, Op::kAddRms, Op::kLayer, Op::kAddLayer}) run_case(op, t, rows, dim, 0, &seen);
    }
    // Unaligned tensors take the scalar path even when dim is a multiple of the vector width.
    run_case(Op::kAddLayer, t, 4, 4096, 1, &seen);
    run_case(Op::kRms, t, 2, 65536, 3, &seen);
  }
  if (!quick()) {
    for (NormPath p : {NormPath::kCachedNV1, NormPath::kCachedNV2, NormPath::kCachedNV4, NormPath::kSharedRow,
                       NormPath::kLoopVec, NormPath::kLoopScalar})
      EXPECT_TRUE(seen.count(p)) << "dispatch branch " << static_cast<int>(p) << " not covered";
  }
}

// The mixed-precision ops (fp32 residual stream; delta, gamma, beta, y in t). The CPU reference runs on the
// same values: delta / gamma / beta rounded through t, the residual left in fp32 (that is the point).
void run_mixed_case(Op op, DType t, int64_t rows, int64_t dim, int64_t misalign, std::set<NormPath>* seen) {
  SCOPED_TRACE("mixed op " + std::to_string(static_cast<int>(op)) + " dtype " + dtype_name(t) + " rows " +
               std::to_string(rows) + " dim " + std::to_string(dim) + " misalign " + std::to_string(misalign));
  const uint32_t seed = static_cast<uint32_t>(dim * 37 + rows + static_cast<int>(op) * 11 + misalign + 5);
  auto x = randn(rows * dim, seed, 1.f, 3.f), delta = randn(rows * dim, seed + 1, 0.5f);
  auto gamma = randn(dim, seed + 2, 0.2f, 1.f), beta = randn(dim, seed + 3, 0.1f);
  quantize(delta, t), quantize(gamma, t), quantize(beta, t);  // x stays fp32
  const float eps = 1e-5f;
  auto with_offset = [&](const std::vector<float>& v, DType bt) {
    std::vector<float> p(misalign, 0.f);
    p.insert(p.end(), v.begin(), v.end());
    return DeviceBuffer::from(p, bt);
  };
  auto at = [&](const DeviceBuffer& b, DType bt) { return static_cast<char*>(b.get()) + misalign * dtype_size(bt); };
  DeviceBuffer dx = with_offset(x, DType::F32), dd = with_offset(delta, t), dg = with_offset(gamma, t),
               db = with_offset(beta, t);
  DeviceBuffer dy(rows * dim + misalign, t);
  dy.poison();
  seen->insert(norm_path(dim, t, misalign == 0, true));
  float* xf = reinterpret_cast<float*>(at(dx, DType::F32));

  std::vector<float> y_ref(rows * dim), r_ref = x;
  switch (op) {
    case Op::kRms:
      TESSERA_STATUS_CHECK(rms_norm_mixed(xf, at(dg, t), at(dy, t), rows, dim, eps, t, nullptr));
      ops::rms_norm(x.data(), gamma.data(), y_ref.data(), rows, dim, eps);
      break;
    case Op::kAddRms:
      TESSERA_STATUS_CHECK(add_rms_norm_mixed(xf, at(dd, t), at(dg, t), at(dy, t), rows, dim, eps, t, nullptr));
      ops::add_rms_norm(r_ref.data(), delta.data(), gamma.data(), y_ref.data(), rows, dim, eps);
      break;
    case Op::kLayer:
      TESSERA_STATUS_CHECK(layer_norm_mixed(xf, at(dg, t), at(db, t), at(dy, t), rows, dim, eps, t, nullptr));
      ops::layer_norm(x.data(), gamma.data(), beta.data(), y_ref.data(), rows, dim, eps);
      break;
    case Op::kAddLayer:
      TESSERA_STATUS_CHECK(
          add_layer_norm_mixed(xf, at(dd, t), at(dg, t), at(db, t), at(dy, t), rows, dim, eps, t, nullptr));
      ops::add_layer_norm(r_ref.data(), delta.data(), gamma.data(), beta.data(), y_ref.data(), rows, dim, eps);
      break;
  }
  auto y = dy.download();
  y.erase(y.begin(), y.begin() + misalign);
  EXPECT_TRUE(all_close(y, y_ref, norm_tol(t)));
  // The fp32 residual: the same single fp32 add as the CPU's, so equal (not merely close).
  auto r = dx.download();
  r.erase(r.begin(), r.begin() + misalign);
  EXPECT_TRUE(all_close(r, r_ref, Tol{0, 0}));
}

TEST(CudaNorm, MixedFp32ResidualMatchesCpuOverHiddenSizesAndBranches) {
  TESSERA_SKIP_WITHOUT_GPU();
  std::set<NormPath> seen;
  for (DType t : kAllTypes) {
    std::vector<int64_t> ds = dims();
    // 40960: the widest fp32 row of the shared-memory path (160 KB), for the 16-bit types too.
    if (!quick()) ds.push_back(40960);
    for (int64_t dim : ds) {
      const int64_t rows = dim >= 16384 ? 3 : 5;
      for (Op op : {Op::kRms, Op::kAddRms, Op::kLayer, Op::kAddLayer}) run_mixed_case(op, t, rows, dim, 0, &seen);
    }
    run_mixed_case(Op::kAddLayer, t, 4, 4096, 1, &seen);
    run_mixed_case(Op::kAddRms, t, 2, 65536, 3, &seen);
  }
  if (!quick()) {
    for (NormPath p : {NormPath::kCachedNV1, NormPath::kCachedNV2, NormPath::kCachedNV4, NormPath::kSharedRow,
                       NormPath::kLoopVec, NormPath::kLoopScalar})
      EXPECT_TRUE(seen.count(p)) << "dispatch branch " << static_cast<int>(p) << " not covered (mixed)";
  }
  // The path choice for the 16-bit types: registers as before, the fp32 shared row up to 40960, then the loop.
  EXPECT_EQ(norm_path(32768, DType::BF16, true, true), NormPath::kCachedNV4);
  EXPECT_EQ(norm_path(40960, DType::BF16, true, true), NormPath::kSharedRow);
  EXPECT_EQ(norm_path(65536, DType::BF16, true, true), NormPath::kLoopVec);
  EXPECT_EQ(norm_path(65536, DType::BF16, true, false), NormPath::kSharedRow);
}

TEST(CudaNorm, MixedWithF32StorageIsBitwiseThePlainOp) {
  TESSERA_SKIP_WITHOUT_GPU();
  for (int64_t dim : {576, 4096, 24576, 65536}) {
    const int64_t rows = 3;
    auto x = randn(rows * dim, 7 + dim, 1.f, 3.f), delta = randn(rows * dim, 8 + dim, 0.5f);
    auto gamma = randn(dim, 9 + dim, 0.2f, 1.f), beta = randn(dim, 10 + dim, 0.1f);
    DeviceBuffer r1 = DeviceBuffer::from(x, DType::F32), r2 = DeviceBuffer::from(x, DType::F32);
    DeviceBuffer dd = DeviceBuffer::from(delta, DType::F32), dg = DeviceBuffer::from(gamma, DType::F32),
                 db = DeviceBuffer::from(beta, DType::F32);
    DeviceBuffer y1(rows * dim, DType::F32), y2(rows * dim, DType::F32);
    y1.poison(), y2.poison();
    TESSERA_STATUS_CHECK(
        add_layer_norm(r1.get(), dd.get(), dg.get(), db.get(), y1.get(), rows, dim, 1e-5f, DType::F32, nullptr));
    TESSERA_STATUS_CHECK(add_layer_norm_mixed(static_cast<float*>(r2.get()), dd.get(), dg.get(), db.get(), y2.get(),
                                              rows, dim, 1e-5f, DType::F32, nullptr));
    EXPECT_EQ(y1.download(), y2.download()) << "dim " << dim;
    EXPECT_EQ(r1.download(), r2.download()) << "dim " << dim;
  }
}

TEST(CudaNorm, EmbeddingF32MatchesCpu) {
  TESSERA_SKIP_WITHOUT_GPU();
  for (DType t : kAllTypes) {
    for (int64_t dim : {576, 1000, 4096, 7}) {
      SCOPED_TRACE(std::string("dtype ") + dtype_name(t) + " dim " + std::to_string(dim));
      const int64_t vocab = 50, n_pos = 40, n = 17;
      auto wte = randn(vocab * dim, 3 + dim, 1.f), wpe = randn(n_pos * dim, 4 + dim, 0.3f);
      quantize(wte, t), quantize(wpe, t);
      std::vector<int32_t> ids(n), pos(n);
      for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7 + 3) % vocab), pos[i] = i;
      DeviceBuffer dte = DeviceBuffer::from(wte, t), dpe = DeviceBuffer::from(wpe, t);
      DeviceBuffer dids = DeviceBuffer::ints(ids), dpos = DeviceBuffer::ints(pos);
      for (bool with_pos : {false, true}) {
        DeviceBuffer out(n * dim, DType::F32);
        out.poison();
        TESSERA_STATUS_CHECK(embedding_f32(dids.i32(), dpos.i32(), dte.get(), with_pos ? dpe.get() : nullptr,
                                           static_cast<float*>(out.get()), n, dim, t, nullptr));
        std::vector<float> ref(n * dim);
        ops::embedding(ids.data(), pos.data(), wte.data(), with_pos ? wpe.data() : nullptr, ref.data(), n, dim);
        // The sum of two values of t, taken in fp32 as on the CPU: equal.
        EXPECT_TRUE(all_close(out.download(), ref, Tol{0, 0})) << "with_pos " << with_pos;
      }
    }
  }
}

TEST(CudaNorm, ManyRows) {
  TESSERA_SKIP_WITHOUT_GPU();
  std::set<NormPath> seen;
  run_case(Op::kAddRms, DType::BF16, quick() ? 64 : 4096, 576, 0, &seen);
  run_case(Op::kLayer, DType::F16, quick() ? 64 : 2048, 1024, 0, &seen);
}

TEST(CudaNorm, RejectsBadArguments) {
  // Validation happens before any launch: no device needed.
  const Status st = rms_norm(nullptr, nullptr, nullptr, 4, 0, 1e-5f, DType::BF16, nullptr);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message.find("rms_norm"), std::string::npos) << st.message;
  EXPECT_NE(st.message.find("'dim'"), std::string::npos) << st.message;
  const Status st2 = layer_norm(reinterpret_cast<void*>(16), reinterpret_cast<void*>(16), nullptr,
                                reinterpret_cast<void*>(16), 4, 8, 1e-5f, DType::F32, nullptr);
  EXPECT_NE(st2.message.find("'beta'"), std::string::npos) << st2.message;
  const Status st3 = add_rms_norm_mixed(reinterpret_cast<float*>(16), nullptr, reinterpret_cast<void*>(16),
                                        reinterpret_cast<void*>(16), 4, 8, 1e-5f, DType::BF16, nullptr);
  EXPECT_NE(st3.message.find("add_rms_norm_mixed"), std::string::npos) << st3.message;
  EXPECT_NE(st3.message.find("'delta'"), std::string::npos) << st3.message;
  const Status st4 = embedding_f32(nullptr, nullptr, nullptr, nullptr, nullptr, 3, 8, DType::BF16, nullptr);
  EXPECT_NE(st4.message.find("'ids'"), std::string::npos) << st4.message;
}

}  // namespace
}  // namespace tessera::gpu::testing
