// kernels/cuda/convert.cu — fp32 to the storage type (see the .cuh).
#include "kernels/cuda/convert.cuh"

#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

constexpr int kThreads = 256;

// W == 4: elements [0, n / 4 * 4) as 16-byte fp32 loads and 4-element stores, then the tail one element per
// thread; W == 1: every element scalar.
template <typename T, int W>
__global__ void convert_from_f32_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t n_vec = n / W;
  for (int64_t i = tid; i < n_vec; i += stride) {
    float v[W];
    load_vec<float, W>(src + i * W, v);
    store_vec<T, W>(dst + i * W, v);
  }
  if (W > 1) {
    const int64_t t = n_vec * W + tid;
    if (t < n) dst[t] = from_float<T>(src[t]);
  }
}

template <typename T>
Status launch_typed(const float* src, T* dst, int64_t n, cudaStream_t stream) {
  constexpr int W = 4;
  const bool vec = aligned16(src) && (reinterpret_cast<uintptr_t>(dst) % (W * sizeof(T))) == 0;
  const int64_t items = vec ? std::max<int64_t>(n / W, 1) : n;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((items + kThreads - 1) / kThreads, 65535));
  if (vec) {
    convert_from_f32_kernel<T, W><<<blocks, kThreads, 0, stream>>>(src, dst, n);
  } else {
    convert_from_f32_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(src, dst, n);
  }
  TESSERA_CUDA_TRY_LAUNCH();
  return Status::success();
}

}  // namespace

Status launch_convert_from_f32(const float* src, void* dst, int64_t n, DType dtype, cudaStream_t stream) {
  if (n == 0) return Status::success();
  TESSERA_DISPATCH_DTYPE(dtype, T, { return launch_typed<T>(src, static_cast<T*>(dst), n, stream); });
  return Status::error("cuda::convert_from_f32: unknown dtype");
}

Status convert_from_f32(const float* src, void* dst, int64_t n, DType dtype, cudaStream_t stream) {
  const char* op = "convert_from_f32";
  TESSERA_ARG_REQUIRE(op, "n", n >= 0, "must be >= 0, got " + std::to_string(n));
  if (n == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "src", src != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "dst", dst != nullptr, "null");
  return launch_convert_from_f32(src, dst, n, dtype, stream);
}

}  // namespace tessera::gpu
