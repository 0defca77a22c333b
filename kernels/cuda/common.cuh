// kernels/cuda/common.cuh — what every kernel shares: storage-type traits (load/store as fp32), 16-byte
// vectors, warp/block reductions, the dtype dispatch of the launchers, and argument-check helpers of the op
// entries. Device code only where marked __device__; included by the .cu files alone.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {

// --- storage types ------------------------------------------------------------------------------------------
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// N elements of T moved as one access (N * sizeof(T) == 16 for the vectorized paths, N == 1 for scalar tails).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <typename T>
constexpr int kVec16 = 16 / sizeof(T);  // elements per 16-byte access

template <typename T, int N>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[N]) {
  Vec<T, N> v = *reinterpret_cast<const Vec<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_float(v.v[i]);
}

template <typename T, int N>
__device__ __forceinline__ void store_vec(T* p, const float (&in)[N]) {
  Vec<T, N> v;
#pragma unroll
  for (int i = 0; i < N; ++i) v.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Vec<T, N>*>(p) = v;
}

// W elements of R at p, as 16-byte accesses (W fp32 values of a bf16 vector are two of them); R == T: one.
template <typename R, int W>
__device__ __forceinline__ void load_r(const R* p, float (&v)[W]) {
  constexpr int C = kVec16<R> < W ? kVec16<R> : W;
#pragma unroll
  for (int c = 0; c < W; c += C) {
    float t[C];
    load_vec<R, C>(p + c, t);
#pragma unroll
    for (int k = 0; k < C; ++k) v[c + k] = t[k];
  }
}
template <typename R, int W>
__device__ __forceinline__ void store_r(R* p, const float (&v)[W]) {
  constexpr int C = kVec16<R> < W ? kVec16<R> : W;
#pragma unroll
  for (int c = 0; c < W; c += C) {
    float t[C];
#pragma unroll
    for (int k = 0; k < C; ++k) t[k] = v[c + k];
    store_vec<R, C>(p + c, t);
  }
}

// --- reductions ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over the block; every thread gets the result. `scratch` holds 33 floats; reusable after return.
__device__ __forceinline__ float block_sum(float x, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
  x = warp_sum(x);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  if (warp == 0) {
    float y = lane < n_warps ? scratch[lane] : 0.f;
    y = warp_sum(y);
    if (lane == 0) scratch[32] = y;
  }
  __syncthreads();
  return scratch[32];
}

// --- host side ----------------------------------------------------------------------------------------------
#define TESSERA_DISPATCH_DTYPE(dtype, T, ...) \
  switch (dtype) {                            \
    case ::tessera::gpu::DType::F32: {        \
      using T = float;                        \
      __VA_ARGS__;                            \
    } break;                                  \
    case ::tessera::gpu::DType::F16: {        \
      using T = __half;                       \
      __VA_ARGS__;                            \
    } break;                                  \
    case ::tessera::gpu::DType::BF16: {       \
      using T = __nv_bfloat16;                \
      __VA_ARGS__;                            \
    } break;                                  \
  }

inline Status arg_error(const char* op, const char* arg, const std::string& why) {
  return Status::error(std::string("cuda::") + op + ": bad argument '" + arg + "': " + why);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

#define TESSERA_ARG_REQUIRE(op, arg, cond, why)                  \
  do {                                                           \
    if (!(cond)) return ::tessera::gpu::arg_error(op, arg, why); \
  } while (0)

inline int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace tessera::gpu
