// kernels/cuda/norm.cu — RMSNorm / LayerNorm (+ fused residual add): kernels, launcher, op entries.
// See norm.cuh for the dispatch. Statistics are fp32; the residual is rounded to its own type (R: the storage
// type, or fp32 for the mixed-precision ops) before the statistics are taken, so add_*_norm(r, d) ==
// *_norm(r + d) exactly as stored. Kernels are templated on T (delta, gamma, beta, y: the storage type) and R
// (x / residual / the row held in shared memory); the plain ops are R == T, the *_mixed ops R == float.
#include "kernels/cuda/norm.cuh"

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

template <typename T>
__device__ __forceinline__ float round_to(float x) {
  return to_float(from_float<T>(x));
}

// Loads W elements of the row at vector index i: x (or residual + delta, storing the new residual).
template <typename T, typename R, int W, bool kAdd>
__device__ __forceinline__ void load_row_vec(const R* x, R* residual, const T* delta, int64_t off, float (&v)[W]) {
  if constexpr (kAdd) {
    float d[W];
    load_r<R, W>(residual + off, v);
    load_vec<T, W>(delta + off, d);
#pragma unroll
    for (int w = 0; w < W; ++w) v[w] = round_to<R>(v[w] + d[w]);
    store_r<R, W>(residual + off, v);
  } else {
    load_r<R, W>(x + off, v);
  }
}

template <typename T, int W, bool kLayer>
__device__ __forceinline__ void store_out(const T* gamma, const T* beta, T* y, int64_t row_off, int64_t col,
                                          const float (&v)[W], float mean, float inv) {
  float g[W], o[W];
  load_vec<T, W>(gamma + col, g);
  if constexpr (kLayer) {
    float b[W];
    load_vec<T, W>(beta + col, b);
#pragma unroll
    for (int w = 0; w < W; ++w) o[w] = (v[w] - mean) * inv * g[w] + b[w];
  } else {
#pragma unroll
    for (int w = 0; w < W; ++w) o[w] = v[w] * inv * g[w];
  }
  store_vec<T, W>(y + row_off + col, o);
}

// The row in registers: thread t holds vectors t, t + blockDim, ..., NV of them.  grid: [rows]
template <typename T, typename R, int W, int NV, bool kLayer, bool kAdd>
__global__ void norm_cached_kernel(const R* __restrict__ x, R* __restrict__ residual, const T* __restrict__ delta,
                                   const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                                   int64_t dim, float eps) {
  __shared__ float scratch[33];
  const int64_t row_off = static_cast<int64_t>(blockIdx.x) * dim;
  const int64_t n_vec = dim / W;
  float v[NV][W];
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (i < n_vec) {
      load_row_vec<T, R, W, kAdd>(x, residual, delta, row_off + i * W, v[j]);
    } else {
#pragma unroll
      for (int w = 0; w < W; ++w) v[j][w] = 0.f;
    }
#pragma unroll
    for (int w = 0; w < W; ++w) sum += kLayer ? v[j][w] : v[j][w] * v[j][w];
  }
  float mean = 0.f, inv;
  if constexpr (kLayer) {
    mean = block_sum(sum, scratch) / static_cast<float>(dim);
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < NV; ++j) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
      if (i < n_vec) {
#pragma unroll
        for (int w = 0; w < W; ++w) ss += (v[j][w] - mean) * (v[j][w] - mean);
      }
    }
    inv = rsqrtf(block_sum(ss, scratch) / static_cast<float>(dim) + eps);
  } else {
    inv = rsqrtf(block_sum(sum, scratch) / static_cast<float>(dim) + eps);
  }
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (i < n_vec) store_out<T, W, kLayer>(gamma, beta, y, row_off, i * W, v[j], mean, inv);
  }
}

// Rows that do not fit in registers. kSharedRow: the row (after the residual add, rounded to R) is kept in
// dynamic shared memory, so global memory is read once, as in the cached path; otherwise the row is re-read from
// global memory (L2) per pass. Each thread re-reads only what it wrote itself, so neither variant needs a barrier
// between passes beyond the ones inside block_sum.  grid: [rows]
template <typename T, typename R, int W, bool kLayer, bool kAdd, bool kSharedRow>
__global__ void norm_loop_kernel(const R* __restrict__ x, R* __restrict__ residual, const T* __restrict__ delta,
                                 const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                                 int64_t dim, float eps) {
  __shared__ float scratch[33];
  extern __shared__ __align__(16) unsigned char row_smem[];
  R* row = reinterpret_cast<R*>(row_smem);  // [dim] when kSharedRow
  const int64_t row_off = static_cast<int64_t>(blockIdx.x) * dim;
  const int64_t n_vec = dim / W;
  const R* src = kSharedRow ? row : (kAdd ? residual + row_off : x + row_off);
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < n_vec; i += blockDim.x) {
    float v[W];
    load_row_vec<T, R, W, kAdd>(x, residual, delta, row_off + i * W, v);
    if constexpr (kSharedRow) store_r<R, W>(row + i * W, v);
#pragma unroll
    for (int w = 0; w < W; ++w) sum += kLayer ? v[w] : v[w] * v[w];
  }
  float mean = 0.f, inv;
  if constexpr (kLayer) {
    mean = block_sum(sum, scratch) / static_cast<float>(dim);
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < n_vec; i += blockDim.x) {
      float v[W];
      load_r<R, W>(src + i * W, v);
#pragma unroll
      for (int w = 0; w < W; ++w) ss += (v[w] - mean) * (v[w] - mean);
    }
    inv = rsqrtf(block_sum(ss, scratch) / static_cast<float>(dim) + eps);
  } else {
    inv = rsqrtf(block_sum(sum, scratch) / static_cast<float>(dim) + eps);
  }
  for (int64_t i = threadIdx.x; i < n_vec; i += blockDim.x) {
    float v[W];
    load_r<R, W>(src + i * W, v);
    store_out<T, W, kLayer>(gamma, beta, y, row_off, i * W, v, mean, inv);
  }
}

constexpr int kMaxThreads = 1024;
// Rows up to this many bytes are kept in shared memory by the kSharedRow path (H100: 227 KB per block).
constexpr int64_t kSharedRowMaxBytes = 160 * 1024;

template <typename T, typename R, bool kLayer, bool kAdd>
Status launch_typed(const R* x, R* residual, const T* delta, const T* gamma, const T* beta, T* y, int64_t rows,
                    int64_t dim, float eps, NormPath path, cudaStream_t stream) {
  constexpr int W = kVec16<T>;
  const int64_t n_vec = dim / W;
  auto threads_for = [](int64_t n) { return static_cast<int>(std::min<int64_t>(kMaxThreads, (n + 31) / 32 * 32)); };
  const dim3 grid(static_cast<unsigned>(rows));
  switch (path) {
    case NormPath::kCachedNV1:
      norm_cached_kernel<T, R, W, 1, kLayer, kAdd>
          <<<grid, threads_for(n_vec), 0, stream>>>(x, residual, delta, gamma, beta, y, dim, eps);
      break;
    case NormPath::kCachedNV2:
      norm_cached_kernel<T, R, W, 2, kLayer, kAdd>
          <<<grid, threads_for((n_vec + 1) / 2), 0, stream>>>(x, residual, delta, gamma, beta, y, dim, eps);
      break;
    case NormPath::kCachedNV4:
      norm_cached_kernel<T, R, W, 4, kLayer, kAdd>
          <<<grid, threads_for((n_vec + 3) / 4), 0, stream>>>(x, residual, delta, gamma, beta, y, dim, eps);
      break;
    case NormPath::kSharedRow: {
      auto kernel = norm_loop_kernel<T, R, W, kLayer, kAdd, true>;
      const int smem = static_cast<int>(dim * sizeof(R));
      TESSERA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      kernel<<<grid, kMaxThreads, smem, stream>>>(x, residual, delta, gamma, beta, y, dim, eps);
      break;
    }
    case NormPath::kLoopVec:
      norm_loop_kernel<T, R, W, kLayer, kAdd, false>
          <<<grid, kMaxThreads, 0, stream>>>(x, residual, delta, gamma, beta, y, dim, eps);
      break;
    case NormPath::kLoopScalar:
      norm_loop_kernel<T, R, 1, kLayer, kAdd, false>
          <<<grid, threads_for(dim), 0, stream>>>(x, residual, delta, gamma, beta, y, dim, eps);
      break;
  }
  TESSERA_CUDA_TRY_LAUNCH();
  return Status::success();
}

}  // namespace

NormPath norm_path(int64_t dim, DType dtype, bool all_aligned16, bool f32_row) {
  const int64_t w = 16 / static_cast<int64_t>(dtype_size(dtype));
  if (dim % w != 0 || !all_aligned16) return NormPath::kLoopScalar;
  const int64_t n_vec = dim / w;
  if (n_vec <= kMaxThreads) return NormPath::kCachedNV1;
  if (n_vec <= 2 * kMaxThreads) return NormPath::kCachedNV2;
  if (n_vec <= 4 * kMaxThreads) return NormPath::kCachedNV4;
  const int64_t row_elem = f32_row ? 4 : static_cast<int64_t>(dtype_size(dtype));
  if (dim * row_elem <= kSharedRowMaxBytes) return NormPath::kSharedRow;
  return NormPath::kLoopVec;
}

Status launch_norm(const void* x, void* residual, const void* delta, const void* gamma, const void* beta, void* y,
                   int64_t rows, int64_t dim, float eps, bool layer, DType dtype, cudaStream_t stream, bool f32_row) {
  if (rows == 0) return Status::success();
  const bool add = residual != nullptr;
  const bool aligned = (add ? aligned16(residual) && aligned16(delta) : aligned16(x)) && aligned16(gamma) &&
                       (beta == nullptr || aligned16(beta)) && aligned16(y);
  // With an F32 storage type the mixed ops are the plain ones (R == T == float): the same kernels, bit for bit.
  if (dtype == DType::F32) f32_row = false;
  const NormPath path = norm_path(dim, dtype, aligned, f32_row);
  auto go = [&](auto t_tag, auto r_tag) -> Status {
    using T = decltype(t_tag);
    using R = decltype(r_tag);
    const R* xt = static_cast<const R*>(x);
    R* rt = static_cast<R*>(residual);
    const T* dt = static_cast<const T*>(delta);
    const T* gt = static_cast<const T*>(gamma);
    const T* bt = static_cast<const T*>(beta);
    T* yt = static_cast<T*>(y);
    if (layer && add) return launch_typed<T, R, true, true>(xt, rt, dt, gt, bt, yt, rows, dim, eps, path, stream);
    if (layer) return launch_typed<T, R, true, false>(xt, rt, dt, gt, bt, yt, rows, dim, eps, path, stream);
    if (add) return launch_typed<T, R, false, true>(xt, rt, dt, gt, bt, yt, rows, dim, eps, path, stream);
    return launch_typed<T, R, false, false>(xt, rt, dt, gt, bt, yt, rows, dim, eps, path, stream);
  };
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    if (f32_row) return go(T{}, float{});
    return go(T{}, T{});
  });
  return Status::error("cuda::norm: unknown dtype");
}

namespace {
Status check_norm_args(const char* op, const void* x, const void* gamma, const void* beta, bool need_beta,
                       const void* y, int64_t rows, int64_t dim, float eps) {
  TESSERA_ARG_REQUIRE(op, "rows", rows >= 0 && rows <= INT32_MAX, "must be in [0, 2^31), got " + std::to_string(rows));
  TESSERA_ARG_REQUIRE(op, "dim", dim > 0, "must be > 0, got " + std::to_string(dim));
  TESSERA_ARG_REQUIRE(op, "eps", eps >= 0.f, "must be >= 0");
  if (rows == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "x", x != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "gamma", gamma != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "beta", !need_beta || beta != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "y", y != nullptr, "null");
  return Status::success();
}
}  // namespace

Status rms_norm(const void* x, const void* gamma, void* y, int64_t rows, int64_t dim, float eps, DType dtype,
                cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_norm_args("rms_norm", x, gamma, nullptr, false, y, rows, dim, eps));
  return launch_norm(x, nullptr, nullptr, gamma, nullptr, y, rows, dim, eps, false, dtype, stream);
}

Status add_rms_norm(void* residual, const void* delta, const void* gamma, void* y, int64_t rows, int64_t dim, float eps,
                    DType dtype, cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_norm_args("add_rms_norm", residual, gamma, nullptr, false, y, rows, dim, eps));
  TESSERA_ARG_REQUIRE("add_rms_norm", "delta", rows == 0 || delta != nullptr, "null");
  return launch_norm(nullptr, residual, delta, gamma, nullptr, y, rows, dim, eps, false, dtype, stream);
}

Status layer_norm(const void* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t dim, float eps,
                  DType dtype, cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_norm_args("layer_norm", x, gamma, beta, true, y, rows, dim, eps));
  return launch_norm(x, nullptr, nullptr, gamma, beta, y, rows, dim, eps, true, dtype, stream);
}

Status add_layer_norm(void* residual, const void* delta, const void* gamma, const void* beta, void* y, int64_t rows,
                      int64_t dim, float eps, DType dtype, cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_norm_args("add_layer_norm", residual, gamma, beta, true, y, rows, dim, eps));
  TESSERA_ARG_REQUIRE("add_layer_norm", "delta", rows == 0 || delta != nullptr, "null");
  return launch_norm(nullptr, residual, delta, gamma, beta, y, rows, dim, eps, true, dtype, stream);
}

// --- the fp32 residual stream (mixed precision) -----------------------------------------------------------------

Status rms_norm_mixed(const float* x, const void* gamma, void* y, int64_t rows, int64_t dim, float eps, DType dtype,
                      cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_norm_args("rms_norm_mixed", x, gamma, nullptr, false, y, rows, dim, eps));
  return launch_norm(x, nullptr, nullptr, gamma, nullptr, y, rows, dim, eps, false, dtype, stream, true);
}

Status add_rms_norm_mixed(float* residual, const void* delta, const void* gamma, void* y, int64_t rows, int64_t dim,
                          float eps, DType dtype, cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_norm_args("add_rms_norm_mixed", residual, gamma, nullptr, false, y, rows, dim, eps));
  TESSERA_ARG_REQUIRE("add_rms_norm_mixed", "delta", rows == 0 || delta != nullptr, "null");
  return launch_norm(nullptr, residual, delta, gamma, nullptr, y, rows, dim, eps, false, dtype, stream, true);
}

Status layer_norm_mixed(const float* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t dim,
                        float eps, DType dtype, cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_norm_args("layer_norm_mixed", x, gamma, beta, true, y, rows, dim, eps));
  return launch_norm(x, nullptr, nullptr, gamma, beta, y, rows, dim, eps, true, dtype, stream, true);
}

Status add_layer_norm_mixed(float* residual, const void* delta, const void* gamma, const void* beta, void* y,
                            int64_t rows, int64_t dim, float eps, DType dtype, cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_norm_args("add_layer_norm_mixed", residual, gamma, beta, true, y, rows, dim, eps));
  TESSERA_ARG_REQUIRE("add_layer_norm_mixed", "delta", rows == 0 || delta != nullptr, "null");
  return launch_norm(nullptr, residual, delta, gamma, beta, y, rows, dim, eps, true, dtype, stream, true);
}

}  // namespace tessera::gpu
