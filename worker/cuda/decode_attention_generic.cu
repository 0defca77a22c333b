// worker/cuda/decode_attention_generic.cu — see decode_attention_generic.h.
#include <cmath>
#include <string>

#include "kernels/cuda/common.cuh"
#include "worker/cuda/decode_attention_generic.h"

namespace tessera::gpu {
namespace {

constexpr int kMaxPerLane = kGenericDecodeMaxHeadDim / 32;  // head-dim elements each lane holds

// grid (n_heads, B), one warp. Lane l holds dims l, l + 32, ... of the query and of the output accumulator.
template <typename T>
__global__ void attention_decode_generic_kernel(const T* __restrict__ q, int64_t q_stride, const T* __restrict__ ck,
                                                const T* __restrict__ cv, const int32_t* __restrict__ slots,
                                                const int32_t* __restrict__ starts, const int32_t* __restrict__ lens,
                                                T* __restrict__ out, int n_heads, int group, int D, int64_t max_ctx,
                                                float scale) {
  const int h = blockIdx.x, b = blockIdx.y, lane = threadIdx.x;
  const int kvh = h / group;
  const int64_t n_kv_heads = n_heads / group;
  const T* qrow = q + b * q_stride + static_cast<int64_t>(h) * D;
  const int64_t base = ((static_cast<int64_t>(slots[b]) * n_kv_heads + kvh) * max_ctx) * D;
  float qv[kMaxPerLane], acc[kMaxPerLane];
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < D ? to_float(qrow[d]) * scale : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  const int64_t j0 = starts[b], j1 = j0 + lens[b];
  for (int64_t j = j0; j < j1; ++j) {
    const T* krow = ck + base + j * D;
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) s += qv[i] * to_float(krow[d]);
    }
    s = warp_sum(s);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), p = expf(s - m_new);
    l = l * corr + p;
    const T* vrow = cv + base + j * D;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) acc[i] = acc[i] * corr + p * to_float(vrow[d]);
    }
    m = m_new;
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;  // an empty range writes zeros
  T* orow = out + (static_cast<int64_t>(b) * n_heads + h) * D;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < D) orow[d] = from_float<T>(acc[i] * inv);
  }
}

template <typename T>
__global__ void convert_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = from_float<T>(src[i]);
}

}  // namespace

Status attention_decode_generic(const void* q, int64_t q_stride, const void* cache_k, const void* cache_v,
                                const int32_t* slots, const int32_t* starts, const int32_t* lens, void* out, int64_t B,
                                int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale,
                                DType dtype, cudaStream_t stream) {
  const char* op = "attention_decode_generic";
  TESSERA_ARG_REQUIRE(op, "B", B >= 0 && B <= 65535, "must be in [0, 65535], got " + std::to_string(B));
  TESSERA_ARG_REQUIRE(op, "n_kv_heads", n_kv_heads > 0 && n_heads > 0 && n_heads % n_kv_heads == 0,
                      "must divide n_heads = " + std::to_string(n_heads) + ", got " + std::to_string(n_kv_heads));
  TESSERA_ARG_REQUIRE(op, "head_dim", head_dim > 0 && head_dim <= kGenericDecodeMaxHeadDim,
                      "must be in [1, 256], got " + std::to_string(head_dim));
  TESSERA_ARG_REQUIRE(op, "q_stride", q_stride >= n_heads * head_dim,
                      "must be >= n_heads * head_dim = " + std::to_string(n_heads * head_dim));
  if (B == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "pointers", q && cache_k && cache_v && slots && starts && lens && out, "null");
  const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(B));
  const int group = static_cast<int>(n_heads / n_kv_heads);
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    attention_decode_generic_kernel<T>
        <<<grid, 32, 0, stream>>>(static_cast<const T*>(q), q_stride, static_cast<const T*>(cache_k),
                                  static_cast<const T*>(cache_v), slots, starts, lens, static_cast<T*>(out),
                                  static_cast<int>(n_heads), group, static_cast<int>(head_dim), max_ctx, scale);
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

Status convert_from_f32(const float* src, void* dst, int64_t n, DType dtype, cudaStream_t stream) {
  TESSERA_ARG_REQUIRE("convert_from_f32", "n", n >= 0, "must be >= 0");
  if (n == 0) return Status::success();
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535));
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    convert_kernel<T><<<blocks, threads, 0, stream>>>(src, static_cast<T*>(dst), n);
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

}  // namespace tessera::gpu
