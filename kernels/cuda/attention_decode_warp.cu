// kernels/cuda/attention_decode_warp.cu — one warp per (sequence, query head), any head_dim <= 256 (see the .cuh).
#include "kernels/cuda/attention_decode_warp.cuh"

#include <cmath>

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// grid: [n_heads, B], block: 32.  NPL: head-dim elements per lane (ceil(D / 32) rounded up to 1, 2, 4 or 8);
// elements d >= D are masked.
template <typename T, int NPL>
__global__ void __launch_bounds__(32)
    attention_decode_warp_kernel(const T* __restrict__ q, int64_t q_stride, const T* __restrict__ cache_k,
                                 const T* __restrict__ cache_v, const int32_t* __restrict__ slots,
                                 const int32_t* __restrict__ starts, const int32_t* __restrict__ lens,
                                 T* __restrict__ out, int n_heads, int n_kv_heads, int D, int64_t max_ctx,
                                 float scale_log2) {
  const int h = blockIdx.x, b = blockIdx.y, lane = threadIdx.x;
  const int kvh = h / (n_heads / n_kv_heads);
  const T* qrow = q + b * q_stride + static_cast<int64_t>(h) * D;
  // cache: [n_slots, n_kv_heads, max_ctx, D]; keys [starts[b], starts[b] + lens[b]) of slot slots[b].
  const int64_t base = ((static_cast<int64_t>(slots[b]) * n_kv_heads + kvh) * max_ctx + starts[b]) * D;
  const T* kp = cache_k + base;
  const T* vp = cache_v + base;
  float qv[NPL], acc[NPL];
#pragma unroll
  for (int i = 0; i < NPL; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < D ? to_float(qrow[d]) * scale_log2 : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;  // m in log2 units of the pre-scaled scores
  const int len = lens[b];
  for (int j = 0; j < len; ++j) {
    const T* krow = kp + static_cast<int64_t>(j) * D;
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
      const int d = lane + 32 * i;
      if (d < D) s = fmaf(qv[i], to_float(krow[d]), s);
    }
    s = warp_sum(s);
    const float m_new = fmaxf(m, s);
    const float corr = exp2f(m - m_new), p = exp2f(s - m_new);  // corr = 0 on the first key
    l = fmaf(l, corr, p);
    const T* vrow = vp + static_cast<int64_t>(j) * D;
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
      const int d = lane + 32 * i;
      if (d < D) acc[i] = fmaf(acc[i], corr, p * to_float(vrow[d]));
    }
    m = m_new;
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;  // an empty range writes zeros
  T* orow = out + (static_cast<int64_t>(b) * n_heads + h) * D;
#pragma unroll
  for (int i = 0; i < NPL; ++i) {
    const int d = lane + 32 * i;
    if (d < D) orow[d] = from_float<T>(acc[i] * inv);
  }
}

template <typename T, int NPL>
Status launch_npl(const void* q, int64_t q_stride, const void* ck, const void* cv, const int32_t* slots,
                  const int32_t* starts, const int32_t* lens, void* out, int64_t B, int64_t n_heads, int64_t n_kv_heads,
                  int64_t D, int64_t max_ctx, float scale_log2, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(B));
  attention_decode_warp_kernel<T, NPL><<<grid, 32, 0, stream>>>(
      static_cast<const T*>(q), q_stride, static_cast<const T*>(ck), static_cast<const T*>(cv), slots, starts, lens,
      static_cast<T*>(out), static_cast<int>(n_heads), static_cast<int>(n_kv_heads), static_cast<int>(D), max_ctx,
      scale_log2);
  TESSERA_CUDA_TRY_LAUNCH();
  return Status::success();
}

}  // namespace

Status launch_attention_decode_warp(const void* q, int64_t q_stride, const void* cache_k, const void* cache_v,
                                    const int32_t* slots, const int32_t* starts, const int32_t* lens, void* out,
                                    int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx,
                                    float scale, DType dtype, cudaStream_t stream) {
  if (B == 0) return Status::success();
  const float scale_log2 = scale * kLog2e;
  const int64_t per_lane = (head_dim + 31) / 32;
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    if (per_lane <= 1)
      return launch_npl<T, 1>(q, q_stride, cache_k, cache_v, slots, starts, lens, out, B, n_heads, n_kv_heads, head_dim,
                              max_ctx, scale_log2, stream);
    if (per_lane <= 2)
      return launch_npl<T, 2>(q, q_stride, cache_k, cache_v, slots, starts, lens, out, B, n_heads, n_kv_heads, head_dim,
                              max_ctx, scale_log2, stream);
    if (per_lane <= 4)
      return launch_npl<T, 4>(q, q_stride, cache_k, cache_v, slots, starts, lens, out, B, n_heads, n_kv_heads, head_dim,
                              max_ctx, scale_log2, stream);
    return launch_npl<T, 8>(q, q_stride, cache_k, cache_v, slots, starts, lens, out, B, n_heads, n_kv_heads, head_dim,
                            max_ctx, scale_log2, stream);
  });
  return Status::error("cuda::attention_decode: unknown dtype");
}

}  // namespace tessera::gpu
