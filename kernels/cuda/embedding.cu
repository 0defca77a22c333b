// kernels/cuda/embedding.cu — one block per token row; 16-byte copies when dim and pointers allow.
#include "kernels/cuda/embedding.cuh"

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

template <typename T, int W>
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ pos,
                                 const T* __restrict__ wte, const T* __restrict__ wpe, T* __restrict__ out,
                                 int64_t dim) {
  const int64_t row = blockIdx.x;
  const T* src = wte + static_cast<int64_t>(ids[row]) * dim;
  const T* psrc = wpe != nullptr ? wpe + static_cast<int64_t>(pos[row]) * dim : nullptr;
  for (int64_t i = threadIdx.x; i < dim / W; i += blockDim.x) {
    float v[W];
    load_vec<T, W>(src + i * W, v);
    if (psrc != nullptr) {
      float p[W];
      load_vec<T, W>(psrc + i * W, p);
#pragma unroll
      for (int w = 0; w < W; ++w) v[w] += p[w];
    }
    store_vec<T, W>(out + row * dim + i * W, v);
  }
}

}  // namespace

Status launch_embedding(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, void* out, int64_t n,
                        int64_t dim, DType dtype, cudaStream_t stream) {
  if (n == 0) return Status::success();
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    constexpr int W = kVec16<T>;
    const bool vec = dim % W == 0 && aligned16(wte) && (wpe == nullptr || aligned16(wpe)) && aligned16(out);
    const int threads = static_cast<int>(std::min<int64_t>(256, ((vec ? dim / W : dim) + 31) / 32 * 32));
    if (vec) {
      embedding_kernel<T, W><<<static_cast<unsigned>(n), threads, 0, stream>>>(
          ids, pos, static_cast<const T*>(wte), static_cast<const T*>(wpe), static_cast<T*>(out), dim);
    } else {
      embedding_kernel<T, 1><<<static_cast<unsigned>(n), threads, 0, stream>>>(
          ids, pos, static_cast<const T*>(wte), static_cast<const T*>(wpe), static_cast<T*>(out), dim);
    }
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

Status embedding(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, void* out, int64_t n,
                 int64_t dim, DType dtype, cudaStream_t stream) {
  TESSERA_ARG_REQUIRE("embedding", "n", n >= 0 && n <= INT32_MAX, "must be in [0, 2^31), got " + std::to_string(n));
  TESSERA_ARG_REQUIRE("embedding", "dim", dim > 0, "must be > 0, got " + std::to_string(dim));
  if (n == 0) return Status::success();
  TESSERA_ARG_REQUIRE("embedding", "ids", ids != nullptr, "null");
  TESSERA_ARG_REQUIRE("embedding", "wte", wte != nullptr, "null");
  TESSERA_ARG_REQUIRE("embedding", "pos", wpe == nullptr || pos != nullptr, "null while wpe is given");
  TESSERA_ARG_REQUIRE("embedding", "out", out != nullptr, "null");
  return launch_embedding(ids, pos, wte, wpe, out, n, dim, dtype, stream);
}

}  // namespace tessera::gpu
