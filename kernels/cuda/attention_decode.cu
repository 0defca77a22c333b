// kernels/cuda/attention_decode.cu — flash-decoding: split kernel + combine kernel (see the .cuh for the design);
// the op entry, which also runs attention_decode_warp.cuh for the head dims the split kernel does not take.
#include "kernels/cuda/attention_decode.cuh"

#include <algorithm>
#include <cmath>

#include "kernels/cuda/attention_decode_warp.cuh"
#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kThreads = 128, kTile = 64, kWarps = kThreads / 32;

template <typename T, int D>
struct DecodeShape {
  static constexpr int kTpk = (D / kVec16<T>) < 32 ? D / kVec16<T> : 32;  // threads per key row
  static constexpr int kW = D / kTpk;                                     // elements per thread per row
  static constexpr int kKpi = kThreads / kTpk;                            // key rows per block iteration
};

// grid: [n_heads / HPB, n_splits, B], block: 128.
// ws_o: [B, n_heads, n_splits, D] fp32 (normalized partial outputs); ws_ml: [B, n_heads, n_splits, 2] (m, l),
// m in log2 units of the pre-scaled scores.
template <typename T, int D, int HPB>
__global__ void __launch_bounds__(kThreads)
    attention_decode_split_kernel(const T* __restrict__ q, int64_t q_stride, const T* __restrict__ cache_k,
                                  const T* __restrict__ cache_v, const int32_t* __restrict__ slots,
                                  const int32_t* __restrict__ starts, const int32_t* __restrict__ lens,
                                  T* __restrict__ out, float* __restrict__ ws_o, float* __restrict__ ws_ml, int n_heads,
                                  int n_kv_heads, int64_t max_ctx, int n_splits, float scale_log2) {
  using S = DecodeShape<T, D>;
  constexpr int kTpk = S::kTpk, kW = S::kW, kKpi = S::kKpi;
  __shared__ float s_p[HPB][kTile];
  __shared__ float s_m[HPB], s_l[HPB], s_alpha[HPB];
  __shared__ __align__(16) float s_red[kKpi][HPB][D];

  const int b = blockIdx.z, split = blockIdx.y;
  const int h0 = blockIdx.x * HPB;
  const int group = n_heads / n_kv_heads, kvh = h0 / group;
  const int tid = threadIdx.x, sub = tid % kTpk, kg = tid / kTpk;
  const int warp = tid >> 5, lane = tid & 31;

  const int len = lens[b];
  const int chunk = ((len + n_splits - 1) / n_splits + kTile - 1) / kTile * kTile;
  const int kb = min(split * chunk, len), ke = min(kb + chunk, len);

  const int64_t base = ((static_cast<int64_t>(slots[b]) * n_kv_heads + kvh) * max_ctx + starts[b]) * D;
  const T* kp = cache_k + base + sub * kW;
  const T* vp = cache_v + base + sub * kW;

  float qv[HPB][kW], o[HPB][kW];
#pragma unroll
  for (int g = 0; g < HPB; ++g) {
    const T* qr = q + b * q_stride + static_cast<int64_t>(h0 + g) * D + sub * kW;
#pragma unroll
    for (int w = 0; w < kW; ++w) {
      qv[g][w] = to_float(qr[w]) * scale_log2;
      o[g][w] = 0.f;
    }
  }
  if (tid < HPB) {
    s_m[tid] = -INFINITY;
    s_l[tid] = 0.f;
  }

  for (int j0 = kb; j0 < ke; j0 += kTile) {
    __syncthreads();  // s_p of the previous tile consumed; s_m/s_l initialized
                      // Scores of the tile: kTpk threads per key, then a reduction inside each group of kTpk lanes.
#pragma unroll
    for (int kk = kg; kk < kTile; kk += kKpi) {
      const int j = j0 + kk;
      float kf[kW];
      if (j < ke) {
        load_vec<T, kW>(kp + static_cast<int64_t>(j) * D, kf);
      } else {
#pragma unroll
        for (int w = 0; w < kW; ++w) kf[w] = 0.f;
      }
#pragma unroll
      for (int g = 0; g < HPB; ++g) {
        float d = 0.f;
#pragma unroll
        for (int w = 0; w < kW; ++w) d = fmaf(qv[g][w], kf[w], d);
#pragma unroll
        for (int off = kTpk / 2; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
        if (sub == 0) s_p[g][kk] = j < ke ? d : -INFINITY;
      }
    }
    __syncthreads();
    // Online softmax per head: warp w serves heads w, w + 4, ...
    for (int g = warp; g < HPB; g += kWarps) {
      float x0 = s_p[g][lane], x1 = s_p[g][lane + 32];
      const float m_old = s_m[g];
      const float mn = fmaxf(m_old, warp_max(fmaxf(x0, x1)));  // finite: the tile holds key j0 < ke
      x0 = exp2f(x0 - mn);
      x1 = exp2f(x1 - mn);
      s_p[g][lane] = x0;
      s_p[g][lane + 32] = x1;
      const float sum = warp_sum(x0 + x1);
      if (lane == 0) {
        const float alpha = exp2f(m_old - mn);
        s_alpha[g] = alpha;
        s_l[g] = s_l[g] * alpha + sum;
        s_m[g] = mn;
      }
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < HPB; ++g) {
      const float a = s_alpha[g];
#pragma unroll
      for (int w = 0; w < kW; ++w) o[g][w] *= a;
    }
#pragma unroll
    for (int kk = kg; kk < kTile; kk += kKpi) {
      const int j = j0 + kk;
      if (j < ke) {  // rows past ke may be unwritten cache memory: never touched
        float vf[kW];
        load_vec<T, kW>(vp + static_cast<int64_t>(j) * D, vf);
#pragma unroll
        for (int g = 0; g < HPB; ++g) {
          const float pj = s_p[g][kk];
#pragma unroll
          for (int w = 0; w < kW; ++w) o[g][w] = fmaf(pj, vf[w], o[g][w]);
        }
      }
    }
  }

  // Reduce the kKpi key groups' partial outputs, normalize, write.
  __syncthreads();
#pragma unroll
  for (int g = 0; g < HPB; ++g) {
#pragma unroll
    for (int w = 0; w < kW; ++w) s_red[kg][g][sub * kW + w] = o[g][w];
  }
  __syncthreads();
  for (int idx = tid; idx < HPB * D; idx += kThreads) {
    const int g = idx / D, d = idx % D;
    float acc = 0.f;
#pragma unroll
    for (int r = 0; r < kKpi; ++r) acc += s_red[r][g][d];
    const bool any = kb < ke;
    const float l = any ? s_l[g] : 0.f;
    const float val = l > 0.f ? acc / l : 0.f;
    const int64_t bh = static_cast<int64_t>(b) * n_heads + h0 + g;
    if (n_splits == 1) {
      out[bh * D + d] = from_float<T>(val);
    } else {
      ws_o[(bh * n_splits + split) * D + d] = val;
      if (d == 0) {
        ws_ml[(bh * n_splits + split) * 2 + 0] = any ? s_m[g] : -INFINITY;
        ws_ml[(bh * n_splits + split) * 2 + 1] = l;
      }
    }
  }
}

// grid: [n_heads, B], block: D threads (<= 256).  out[b, h, :] = Σ_s w_s o_s / Σ_s w_s, w_s = 2^(m_s - M) l_s;
// splits with l == 0 (no keys) are skipped, never multiplied (their o is 0 but would be NaN-safe only by luck).
template <typename T>
__global__ void attention_decode_combine_kernel(const float* __restrict__ ws_o, const float* __restrict__ ws_ml,
                                                T* __restrict__ out, int n_heads, int n_splits, int D) {
  const int64_t bh = static_cast<int64_t>(blockIdx.y) * n_heads + blockIdx.x;
  const float* ml = ws_ml + bh * n_splits * 2;
  float mx = -INFINITY;
  for (int s = 0; s < n_splits; ++s)
    if (ml[2 * s + 1] > 0.f) mx = fmaxf(mx, ml[2 * s]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float num = 0.f, den = 0.f;
    for (int s = 0; s < n_splits; ++s) {
      const float l = ml[2 * s + 1];
      if (l > 0.f) {
        const float w = exp2f(ml[2 * s] - mx) * l;
        num = fmaf(w, ws_o[(bh * n_splits + s) * D + d], num);
        den += w;
      }
    }
    out[bh * D + d] = from_float<T>(den > 0.f ? num / den : 0.f);
  }
}

int heads_per_block_for(int64_t group) {
  for (int hpb : {8, 4, 3, 2})
    if (group % hpb == 0) return hpb;
  return 1;
}

template <typename T, int D, int HPB>
Status launch_split(const T* q, int64_t q_stride, const T* ck, const T* cv, const int32_t* slots, const int32_t* starts,
                    const int32_t* lens, T* out, float* ws_o, float* ws_ml, int64_t B, int64_t n_heads,
                    int64_t n_kv_heads, int64_t max_ctx, int n_splits, float scale_log2, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(n_heads / HPB), static_cast<unsigned>(n_splits), static_cast<unsigned>(B));
  attention_decode_split_kernel<T, D, HPB><<<grid, kThreads, 0, stream>>>(
      q, q_stride, ck, cv, slots, starts, lens, out, ws_o, ws_ml, static_cast<int>(n_heads),
      static_cast<int>(n_kv_heads), max_ctx, n_splits, scale_log2);
  TESSERA_CUDA_TRY_LAUNCH();
  return Status::success();
}

template <typename T, int D>
Status launch_typed(const void* q, int64_t q_stride, const void* ck, const void* cv, const int32_t* slots,
                    const int32_t* starts, const int32_t* lens, void* out, float* ws_o, float* ws_ml, int64_t B,
                    int64_t n_heads, int64_t n_kv_heads, int64_t max_ctx, const DecodePlan& plan, float scale_log2,
                    cudaStream_t stream) {
  const auto* qt = static_cast<const T*>(q);
  const auto* kt = static_cast<const T*>(ck);
  const auto* vt = static_cast<const T*>(cv);
  auto* ot = static_cast<T*>(out);
  const int ns = plan.n_splits;
  switch (plan.heads_per_block) {
    case 8:
      TESSERA_STATUS_TRY((launch_split<T, D, 8>(qt, q_stride, kt, vt, slots, starts, lens, ot, ws_o, ws_ml, B, n_heads,
                                                n_kv_heads, max_ctx, ns, scale_log2, stream)));
      break;
    case 4:
      TESSERA_STATUS_TRY((launch_split<T, D, 4>(qt, q_stride, kt, vt, slots, starts, lens, ot, ws_o, ws_ml, B, n_heads,
                                                n_kv_heads, max_ctx, ns, scale_log2, stream)));
      break;
    case 3:
      TESSERA_STATUS_TRY((launch_split<T, D, 3>(qt, q_stride, kt, vt, slots, starts, lens, ot, ws_o, ws_ml, B, n_heads,
                                                n_kv_heads, max_ctx, ns, scale_log2, stream)));
      break;
    case 2:
      TESSERA_STATUS_TRY((launch_split<T, D, 2>(qt, q_stride, kt, vt, slots, starts, lens, ot, ws_o, ws_ml, B, n_heads,
                                                n_kv_heads, max_ctx, ns, scale_log2, stream)));
      break;
    default:
      TESSERA_STATUS_TRY((launch_split<T, D, 1>(qt, q_stride, kt, vt, slots, starts, lens, ot, ws_o, ws_ml, B, n_heads,
                                                n_kv_heads, max_ctx, ns, scale_log2, stream)));
      break;
  }
  if (ns > 1) {
    const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(B));
    attention_decode_combine_kernel<T><<<grid, D, 0, stream>>>(ws_o, ws_ml, ot, static_cast<int>(n_heads), ns, D);
    TESSERA_CUDA_TRY_LAUNCH();
  }
  return Status::success();
}

}  // namespace

DecodePlan plan_attention_decode(int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx,
                                 int n_sms) {
  DecodePlan plan;
  if (head_dim != 64 && head_dim != 128 && head_dim != 256) {
    plan.kernel = DecodeKernel::WarpPerHead;  // one split over all keys: n_splits 1, no workspace
    plan.chunk = max_ctx;
    return plan;
  }
  plan.heads_per_block = heads_per_block_for(n_kv_heads > 0 ? n_heads / n_kv_heads : 1);
  const int64_t base_blocks = std::max<int64_t>(1, B * (n_heads / plan.heads_per_block));
  // ~8 blocks per SM: one 128-thread block keeps only ~16 KB of loads in flight and serializes K loads, softmax
  // and V loads on barriers, so 2 waves (the first version) reached only 23-40% of copy bandwidth on an H100.
  const int64_t target = 8 * static_cast<int64_t>(std::max(1, n_sms));
  const int64_t max_splits = std::max<int64_t>(1, (max_ctx + kTile - 1) / kTile);
  plan.n_splits = static_cast<int>(std::clamp<int64_t>((target + base_blocks - 1) / base_blocks, 1, max_splits));
  plan.chunk = ((max_ctx + plan.n_splits - 1) / plan.n_splits + kTile - 1) / kTile * kTile;
  plan.workspace_bytes =
      plan.n_splits > 1 ? static_cast<size_t>(B * n_heads * plan.n_splits * (head_dim + 2)) * sizeof(float) : 0;
  return plan;
}

Status launch_attention_decode(const void* q, int64_t q_stride, const void* cache_k, const void* cache_v,
                               const int32_t* slots, const int32_t* starts, const int32_t* lens, void* out, int64_t B,
                               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale,
                               const DecodePlan& plan, void* workspace, DType dtype, cudaStream_t stream) {
  if (B == 0) return Status::success();
  auto* ws_o = static_cast<float*>(workspace);
  float* ws_ml = ws_o != nullptr ? ws_o + B * n_heads * plan.n_splits * head_dim : nullptr;
  const float scale_log2 = scale * kLog2e;
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    if (head_dim == 64)
      return launch_typed<T, 64>(q, q_stride, cache_k, cache_v, slots, starts, lens, out, ws_o, ws_ml, B, n_heads,
                                 n_kv_heads, max_ctx, plan, scale_log2, stream);
    if (head_dim == 128)
      return launch_typed<T, 128>(q, q_stride, cache_k, cache_v, slots, starts, lens, out, ws_o, ws_ml, B, n_heads,
                                  n_kv_heads, max_ctx, plan, scale_log2, stream);
    if (head_dim == 256)
      return launch_typed<T, 256>(q, q_stride, cache_k, cache_v, slots, starts, lens, out, ws_o, ws_ml, B, n_heads,
                                  n_kv_heads, max_ctx, plan, scale_log2, stream);
    return Status::error("cuda::attention_decode: the split kernel takes head_dim 64, 128 or 256, got " +
                         std::to_string(head_dim));
  });
  return Status::error("cuda::attention_decode: unknown dtype");
}

Status attention_decode(const void* q, int64_t q_stride, const void* cache_k, const void* cache_v, const int32_t* slots,
                        const int32_t* starts, const int32_t* lens, void* out, int64_t B, int64_t n_heads,
                        int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale, void* workspace,
                        size_t workspace_bytes, DType dtype, cudaStream_t stream) {
  const char* op = "attention_decode";
  TESSERA_ARG_REQUIRE(op, "B", B >= 0 && B <= 65535, "must be in [0, 65535], got " + std::to_string(B));
  TESSERA_ARG_REQUIRE(op, "n_heads", n_heads > 0, "must be > 0, got " + std::to_string(n_heads));
  TESSERA_ARG_REQUIRE(op, "n_kv_heads", n_kv_heads > 0 && n_heads % n_kv_heads == 0,
                      "must divide n_heads = " + std::to_string(n_heads) + ", got " + std::to_string(n_kv_heads));
  TESSERA_ARG_REQUIRE(op, "head_dim", head_dim > 0 && head_dim <= kDecodeWarpMaxHeadDim,
                      "must be in [1, 256], got " + std::to_string(head_dim));
  TESSERA_ARG_REQUIRE(op, "max_ctx", max_ctx > 0 && max_ctx <= INT32_MAX,
                      "must be in [1, 2^31), got " + std::to_string(max_ctx));
  TESSERA_ARG_REQUIRE(op, "q_stride", q_stride >= n_heads * head_dim,
                      "must be >= n_heads * head_dim = " + std::to_string(n_heads * head_dim));
  TESSERA_ARG_REQUIRE(op, "scale", std::isfinite(scale), "must be finite");
  if (B == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "q", q != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "cache_k", cache_k != nullptr && aligned16(cache_k), "null or not 16-byte aligned");
  TESSERA_ARG_REQUIRE(op, "cache_v", cache_v != nullptr && aligned16(cache_v), "null or not 16-byte aligned");
  TESSERA_ARG_REQUIRE(op, "slots", slots != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "starts", starts != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "lens", lens != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "out", out != nullptr, "null");
  const DecodePlan plan = plan_attention_decode(B, n_heads, n_kv_heads, head_dim, max_ctx, device_sm_count());
  TESSERA_ARG_REQUIRE(op, "workspace", plan.workspace_bytes == 0 || (workspace != nullptr && aligned16(workspace)),
                      "null or unaligned, but the plan needs " + std::to_string(plan.workspace_bytes) + " bytes");
  TESSERA_ARG_REQUIRE(
      op, "workspace_bytes", workspace_bytes >= plan.workspace_bytes,
      "the plan needs " + std::to_string(plan.workspace_bytes) + ", got " + std::to_string(workspace_bytes));
  if (plan.kernel == DecodeKernel::WarpPerHead)
    return launch_attention_decode_warp(q, q_stride, cache_k, cache_v, slots, starts, lens, out, B, n_heads, n_kv_heads,
                                        head_dim, max_ctx, scale, dtype, stream);
  return launch_attention_decode(q, q_stride, cache_k, cache_v, slots, starts, lens, out, B, n_heads, n_kv_heads,
                                 head_dim, max_ctx, scale, plan, workspace, dtype, stream);
}

}  // namespace tessera::gpu
