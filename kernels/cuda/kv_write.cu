// kernels/cuda/kv_write.cu — one block per token; 16-byte copies when head_dim, strides and pointers allow.
#include "kernels/cuda/kv_write.cuh"

#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

template <typename T, int W>
__global__ void kv_write_kernel(const T* __restrict__ k, const T* __restrict__ v, int64_t src_stride,
                                const int32_t* __restrict__ slots, const int32_t* __restrict__ positions,
                                T* __restrict__ cache_k, T* __restrict__ cache_v, int64_t n_kv_heads, int64_t max_ctx,
                                int64_t head_dim) {
  const int64_t t = blockIdx.x;
  const int32_t slot = slots[t];
  if (slot < 0) return;
  const int64_t p = positions[t];
  const int64_t vec_per_head = head_dim / W;
  for (int64_t i = threadIdx.x; i < n_kv_heads * vec_per_head; i += blockDim.x) {
    const int64_t h = i / vec_per_head, d = (i % vec_per_head) * W;
    const int64_t src = t * src_stride + h * head_dim + d;
    const int64_t dst = ((slot * n_kv_heads + h) * max_ctx + p) * head_dim + d;
    *reinterpret_cast<Vec<T, W>*>(cache_k + dst) = *reinterpret_cast<const Vec<T, W>*>(k + src);
    *reinterpret_cast<Vec<T, W>*>(cache_v + dst) = *reinterpret_cast<const Vec<T, W>*>(v + src);
  }
}

}  // namespace

Status launch_kv_write(const void* k, const void* v, int64_t src_stride, const int32_t* slots, const int32_t* positions,
                       int64_t n_tokens, void* cache_k, void* cache_v, int64_t n_kv_heads, int64_t max_ctx,
                       int64_t head_dim, DType dtype, cudaStream_t stream) {
  if (n_tokens == 0) return Status::success();
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    constexpr int W = kVec16<T>;
    const bool vec = head_dim % W == 0 && src_stride % W == 0 && aligned16(k) && aligned16(v) && aligned16(cache_k) &&
                     aligned16(cache_v);
    const int64_t n_items = n_kv_heads * (vec ? head_dim / W : head_dim);
    const int threads = static_cast<int>(std::min<int64_t>(256, (n_items + 31) / 32 * 32));
    const auto* kt = static_cast<const T*>(k);
    const auto* vt = static_cast<const T*>(v);
    auto* ck = static_cast<T*>(cache_k);
    auto* cv = static_cast<T*>(cache_v);
    if (vec) {
      kv_write_kernel<T, W><<<static_cast<unsigned>(n_tokens), threads, 0, stream>>>(
          kt, vt, src_stride, slots, positions, ck, cv, n_kv_heads, max_ctx, head_dim);
    } else {
      kv_write_kernel<T, 1><<<static_cast<unsigned>(n_tokens), threads, 0, stream>>>(
          kt, vt, src_stride, slots, positions, ck, cv, n_kv_heads, max_ctx, head_dim);
    }
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

Status kv_write(const void* k, const void* v, int64_t src_stride, const int32_t* slots, const int32_t* positions,
                int64_t n_tokens, void* cache_k, void* cache_v, int64_t n_kv_heads, int64_t max_ctx, int64_t head_dim,
                DType dtype, cudaStream_t stream) {
  const char* op = "kv_write";
  TESSERA_ARG_REQUIRE(op, "n_tokens", n_tokens >= 0 && n_tokens <= INT32_MAX,
                      "must be in [0, 2^31), got " + std::to_string(n_tokens));
  TESSERA_ARG_REQUIRE(op, "n_kv_heads", n_kv_heads > 0, "must be > 0, got " + std::to_string(n_kv_heads));
  TESSERA_ARG_REQUIRE(op, "head_dim", head_dim > 0, "must be > 0, got " + std::to_string(head_dim));
  TESSERA_ARG_REQUIRE(op, "max_ctx", max_ctx > 0, "must be > 0, got " + std::to_string(max_ctx));
  TESSERA_ARG_REQUIRE(op, "src_stride", src_stride >= n_kv_heads * head_dim,
                      "must be >= n_kv_heads * head_dim = " + std::to_string(n_kv_heads * head_dim));
  if (n_tokens == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "k", k != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "v", v != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "slots", slots != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "positions", positions != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "cache_k", cache_k != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "cache_v", cache_v != nullptr, "null");
  return launch_kv_write(k, v, src_stride, slots, positions, n_tokens, cache_k, cache_v, n_kv_heads, max_ctx, head_dim,
                         dtype, stream);
}

}  // namespace tessera::gpu
