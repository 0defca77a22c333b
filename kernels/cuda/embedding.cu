// kernels/cuda/embedding.cu — one block per token row; 16-byte copies when dim and pointers allow.
#include "kernels/cuda/embedding.cuh"

#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

// out (O: the storage type, or fp32 to start an fp32 residual stream) = wte[ids] (+ wpe[pos]), summed in fp32.
template <typename T, typename O, int W>
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ pos,
                                 const T* __restrict__ wte, const T* __restrict__ wpe, O* __restrict__ out,
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
    store_r<O, W>(out + row * dim + i * W, v);
  }
}

template <typename O>
Status launch_embedding_as(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, void* out_v,
                           int64_t n, int64_t dim, DType dtype, cudaStream_t stream) {
  if (n == 0) return Status::success();
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    using Out = std::conditional_t<std::is_same_v<O, void>, T, O>;  // void: the storage type
    Out* out = static_cast<Out*>(out_v);
    constexpr int W = kVec16<T>;
    const bool vec = dim % W == 0 && aligned16(wte) && (wpe == nullptr || aligned16(wpe)) && aligned16(out);
    const int threads = static_cast<int>(std::min<int64_t>(256, ((vec ? dim / W : dim) + 31) / 32 * 32));
    if (vec) {
      embedding_kernel<T, Out, W><<<static_cast<unsigned>(n), threads, 0, stream>>>(
          ids, pos, static_cast<const T*>(wte), static_cast<const T*>(wpe), out, dim);
    } else {
      embedding_kernel<T, Out, 1><<<static_cast<unsigned>(n), threads, 0, stream>>>(
          ids, pos, static_cast<const T*>(wte), static_cast<const T*>(wpe), out, dim);
    }
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

Status check_embedding_args(const char* op, const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe,
                            const void* out, int64_t n, int64_t dim) {
  TESSERA_ARG_REQUIRE(op, "n", n >= 0 && n <= INT32_MAX, "must be in [0, 2^31), got " + std::to_string(n));
  TESSERA_ARG_REQUIRE(op, "dim", dim > 0, "must be > 0, got " + std::to_string(dim));
  if (n == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "ids", ids != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "wte", wte != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "pos", wpe == nullptr || pos != nullptr, "null while wpe is given");
  TESSERA_ARG_REQUIRE(op, "out", out != nullptr, "null");
  return Status::success();
}

}  // namespace

Status launch_embedding(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, void* out, int64_t n,
                        int64_t dim, DType dtype, cudaStream_t stream) {
  return launch_embedding_as<void>(ids, pos, wte, wpe, out, n, dim, dtype, stream);
}

Status embedding(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, void* out, int64_t n,
                 int64_t dim, DType dtype, cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_embedding_args("embedding", ids, pos, wte, wpe, out, n, dim));
  return launch_embedding(ids, pos, wte, wpe, out, n, dim, dtype, stream);
}

Status embedding_f32(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, float* out, int64_t n,
                     int64_t dim, DType dtype, cudaStream_t stream) {
  TESSERA_STATUS_TRY(check_embedding_args("embedding_f32", ids, pos, wte, wpe, out, n, dim));
  return launch_embedding_as<float>(ids, pos, wte, wpe, out, n, dim, dtype, stream);
}

}  // namespace tessera::gpu
