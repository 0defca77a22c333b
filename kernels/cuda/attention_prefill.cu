// kernels/cuda/attention_prefill.cu — causal, left-pad aware, GQA prefill attention (see the .cuh for the design).
#include "kernels/cuda/attention_prefill.cuh"

#include <algorithm>
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"

namespace tessera::gpu {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------------------------------------------------------
// kMma: tensor-core kernel.  grid: [n_heads, ceil(L / 64), B], block: 128 threads.
// Shared: 2 stages x (K tile, V tile), each [64 keys][D + 8] (the +8 halves make row starts 16 bytes apart in
// bank terms, so both the 32-bit K fragment loads and ldmatrix are conflict-free).
constexpr int kMmaBQ = 64, kMmaBK = 64, kMmaThreads = 128, kMmaPad = 8;

template <int D>
constexpr int mma_smem_bytes() {
  return 2 * 2 * kMmaBK * (D + kMmaPad) * 2;
}

template <typename T, int D>
__global__ void __launch_bounds__(kMmaThreads)
    attention_prefill_mma_kernel(const T* __restrict__ q, int64_t q_stride, const T* __restrict__ k,
                                 const T* __restrict__ v, int64_t kv_stride, const int32_t* __restrict__ pad,
                                 T* __restrict__ out, int L, int n_heads, int group, float scale_log2) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kS = D + kMmaPad;            // shared row stride in elements
  constexpr int kChunks = D / 8;             // 16-byte chunks per row
  T* smem = reinterpret_cast<T*>(smem_raw);  // [stage][K|V][kMmaBK][kS]

  const int h = blockIdx.x, b = blockIdx.z;
  const int q_tile = gridDim.y - 1 - blockIdx.y;  // heavy (late) tiles first
  const int q0 = q_tile * kMmaBQ;
  const int kvh = h / group;
  const int p = pad[b];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t row_base = static_cast<int64_t>(b) * L;

  // Keys [p, k_end): the row's real keys up to the block's last query row.
  const int k_end = min(q0 + kMmaBQ, L);
  const int n_tiles = k_end > p ? (k_end - p + kMmaBK - 1) / kMmaBK : 0;

  auto load_tile = [&](int tile, int stage) {
    const int j0 = p + tile * kMmaBK;
    T* ks = smem + (stage * 2 + 0) * kMmaBK * kS;
    T* vs = smem + (stage * 2 + 1) * kMmaBK * kS;
#pragma unroll
    for (int i = threadIdx.x; i < kMmaBK * kChunks; i += kMmaThreads) {
      const int r = i / kChunks, c = (i % kChunks) * 8;
      const int j = j0 + r;
      const bool in = j < k_end;
      const int64_t off = (row_base + (in ? j : p)) * kv_stride + static_cast<int64_t>(kvh) * D + c;
      cp_async_16(smem_addr(ks + r * kS + c), k + off, in ? 16 : 0);
      cp_async_16(smem_addr(vs + r * kS + c), v + off, in ? 16 : 0);
    }
  };

  if (n_tiles > 0) load_tile(0, 0);
  cp_async_commit();

  // Q fragments of this warp's 16 rows, straight from global memory (read once).
  const int r_lo = q0 + warp * 16 + g, r_hi = r_lo + 8;
  uint32_t qf[D / 16][4];
  {
    const T* q_lo = q + (row_base + min(r_lo, L - 1)) * q_stride + static_cast<int64_t>(h) * D;
    const T* q_hi = q + (row_base + min(r_hi, L - 1)) * q_stride + static_cast<int64_t>(h) * D;
    const bool ok_lo = r_lo < L && r_lo >= p, ok_hi = r_hi < L && r_hi >= p;
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) {
      const int c = kc * 16 + 2 * t;
      qf[kc][0] = ok_lo ? *reinterpret_cast<const uint32_t*>(q_lo + c) : 0u;
      qf[kc][1] = ok_hi ? *reinterpret_cast<const uint32_t*>(q_hi + c) : 0u;
      qf[kc][2] = ok_lo ? *reinterpret_cast<const uint32_t*>(q_lo + c + 8) : 0u;
      qf[kc][3] = ok_hi ? *reinterpret_cast<const uint32_t*>(q_hi + c + 8) : 0u;
    }
  }

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.f, l_hi = 0.f;

  for (int tile = 0; tile < n_tiles; ++tile) {
    if (tile + 1 < n_tiles) {
      load_tile(tile + 1, (tile + 1) & 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* ks = smem + ((tile & 1) * 2 + 0) * kMmaBK * kS;
    const T* vs = smem + ((tile & 1) * 2 + 1) * kMmaBK * kS;
    const int j0 = p + tile * kMmaBK;

    // S = Q Kᵀ: 16 rows x 64 keys per warp, 8 n-tiles of 8 keys.
    float s[kMmaBK / 8][4];
#pragma unroll
    for (int n = 0; n < kMmaBK / 8; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
      const T* krow = ks + (n * 8 + g) * kS + 2 * t;
#pragma unroll
      for (int kc = 0; kc < D / 16; ++kc) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(krow + kc * 16);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(krow + kc * 16 + 8);
        mma_16816<T>(s[n], qf[kc], b0, b1);
      }
    }

    // Scale, causal mask (j > i, which also covers j >= k_end), running max.
    const bool diagonal = j0 + kMmaBK - 1 > q0 + warp * 16;
    float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
    for (int n = 0; n < kMmaBK / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = j0 + n * 8 + 2 * t + (e & 1);
        const int i = e < 2 ? r_lo : r_hi;
        float x = s[n][e] * scale_log2;
        if (diagonal && j > i) x = -INFINITY;
        s[n][e] = x;
      }
      mx_lo = fmaxf(mx_lo, fmaxf(s[n][0], s[n][1]));
      mx_hi = fmaxf(mx_hi, fmaxf(s[n][2], s[n][3]));
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, off));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, off));
    }
    const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
    // A row with no valid key so far keeps m = -inf: subtract 0 instead so exp2 gives 0, not NaN.
    const float base_lo = mn_lo == -INFINITY ? 0.f : mn_lo, base_hi = mn_hi == -INFINITY ? 0.f : mn_hi;
    const float corr_lo = exp2f(m_lo - base_lo), corr_hi = exp2f(m_hi - base_hi);
    m_lo = mn_lo;
    m_hi = mn_hi;
    l_lo *= corr_lo;
    l_hi *= corr_hi;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= corr_lo;
      o[n][1] *= corr_lo;
      o[n][2] *= corr_hi;
      o[n][3] *= corr_hi;
    }
#pragma unroll
    for (int n = 0; n < kMmaBK / 8; ++n) {
      s[n][0] = exp2f(s[n][0] - base_lo);
      s[n][1] = exp2f(s[n][1] - base_lo);
      s[n][2] = exp2f(s[n][2] - base_hi);
      s[n][3] = exp2f(s[n][3] - base_hi);
      l_lo += s[n][0] + s[n][1];
      l_hi += s[n][2] + s[n][3];
    }

    // O += P V: P's accumulator layout is the A layout of the next mma (FA2), V through ldmatrix.trans.
#pragma unroll
    for (int kc = 0; kc < kMmaBK / 16; ++kc) {
      uint32_t a[4];
      a[0] = pack2<T>(s[2 * kc][0], s[2 * kc][1]);
      a[1] = pack2<T>(s[2 * kc][2], s[2 * kc][3]);
      a[2] = pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      a[3] = pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
      const T* vrow = vs + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kS + (lane >> 4) * 8;
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(b0, b1, b2, b3, smem_addr(vrow + dn * 16));
        mma_16816<T>(o[2 * dn], a, b0, b1);
        mma_16816<T>(o[2 * dn + 1], a, b2, b3);
      }
    }
    __syncthreads();  // the next iteration's prefetch overwrites the stage just read
  }

#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, off);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, off);
  }
  const float inv_lo = l_lo > 0.f ? 1.f / l_lo : 0.f, inv_hi = l_hi > 0.f ? 1.f / l_hi : 0.f;
  T* out_lo = out + ((row_base + r_lo) * n_heads + h) * static_cast<int64_t>(D);
  T* out_hi = out + ((row_base + r_hi) * n_heads + h) * static_cast<int64_t>(D);
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    const int c = n * 8 + 2 * t;
    if (r_lo < L) *reinterpret_cast<uint32_t*>(out_lo + c) = pack2<T>(o[n][0] * inv_lo, o[n][1] * inv_lo);
    if (r_hi < L) *reinterpret_cast<uint32_t*>(out_hi + c) = pack2<T>(o[n][2] * inv_hi, o[n][3] * inv_hi);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// kFma: fp32 FMA kernel for any head_dim <= 256.  grid: [n_heads, ceil(L / 8), B], block: 8 warps, one query row
// each. Shared: q [8][D], K tile [32][D + 1] (odd stride: lane j reads row j conflict-free), V tile [32][D].
constexpr int kFmaRows = 8, kFmaBK = 32, kFmaMaxD = 256;

inline size_t fma_smem_bytes(int64_t D) {
  return sizeof(float) * static_cast<size_t>(kFmaRows * D + kFmaBK * (D + 1) + kFmaBK * D);
}

template <typename T>
__global__ void __launch_bounds__(kFmaRows * 32)
    attention_prefill_fma_kernel(const T* __restrict__ q, int64_t q_stride, const T* __restrict__ k,
                                 const T* __restrict__ v, int64_t kv_stride, const int32_t* __restrict__ pad,
                                 T* __restrict__ out, int L, int n_heads, int group, int D, float scale_log2) {
  extern __shared__ float fsmem[];
  float* qs = fsmem;                  // [8][D]
  float* ks = qs + kFmaRows * D;      // [32][D + 1]
  float* vs = ks + kFmaBK * (D + 1);  // [32][D]
  const int h = blockIdx.x, b = blockIdx.z;
  const int r0 = (gridDim.y - 1 - blockIdx.y) * kFmaRows;
  const int kvh = h / group, p = pad[b];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int i = r0 + warp;  // this warp's query row
  const int64_t row_base = static_cast<int64_t>(b) * L;

  for (int x = threadIdx.x; x < kFmaRows * D; x += blockDim.x) {
    const int r = r0 + x / D;
    qs[x] = r < L ? to_float(q[(row_base + r) * q_stride + static_cast<int64_t>(h) * D + x % D]) : 0.f;
  }
  const int k_end = min(r0 + kFmaRows, L);
  const bool row_valid = i < L && i >= p;
  constexpr int kPerLane = kFmaMaxD / 32;
  float o[kPerLane];
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) o[c] = 0.f;
  float m = -INFINITY, l = 0.f;

  for (int j0 = p; j0 < k_end; j0 += kFmaBK) {
    __syncthreads();  // previous tile consumed (and qs written, on the first pass)
    for (int x = threadIdx.x; x < kFmaBK * D; x += blockDim.x) {
      const int r = x / D, c = x % D, j = j0 + r;
      float kv = 0.f, vv = 0.f;
      if (j < k_end) {
        const int64_t off = (row_base + j) * kv_stride + static_cast<int64_t>(kvh) * D + c;
        kv = to_float(k[off]);
        vv = to_float(v[off]);
      }
      ks[r * (D + 1) + c] = kv;
      vs[r * D + c] = vv;
    }
    __syncthreads();
    if (!row_valid) continue;
    const int j = j0 + lane;
    float sc = -INFINITY;
    if (j <= i) {
      float dot = 0.f;
      const float* kr = ks + lane * (D + 1);
      const float* qr = qs + warp * D;
      for (int d = 0; d < D; ++d) dot = fmaf(qr[d], kr[d], dot);
      sc = dot * scale_log2;
    }
    const float mn = fmaxf(m, warp_max(sc));  // j0 <= i always holds here, so mn is finite
    const float corr = exp2f(m - mn);
    const float pj = exp2f(sc - mn);
    l = l * corr + warp_sum(pj);
    m = mn;
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) o[c] *= corr;
    const int n_keys = min(kFmaBK, i - j0 + 1);
    for (int jj = 0; jj < n_keys; ++jj) {
      const float pb = __shfl_sync(0xffffffffu, pj, jj);
#pragma unroll
      for (int c = 0; c < kPerLane; ++c) {
        const int d = lane + 32 * c;
        if (d < D) o[c] = fmaf(pb, vs[jj * D + d], o[c]);
      }
    }
  }
  if (i >= L) return;
  const float inv = row_valid && l > 0.f ? 1.f / l : 0.f;
  T* orow = out + ((row_base + i) * n_heads + h) * static_cast<int64_t>(D);
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int d = lane + 32 * c;
    if (d < D) orow[d] = from_float<T>(o[c] * inv);
  }
}

template <typename T, int D>
Status launch_mma(const T* q, int64_t q_stride, const T* k, const T* v, int64_t kv_stride, const int32_t* pad, T* out,
                  int64_t B, int64_t L, int64_t n_heads, int64_t group, float scale_log2, cudaStream_t stream) {
  constexpr int kSmem = mma_smem_bytes<D>();
  auto kernel = attention_prefill_mma_kernel<T, D>;
  TESSERA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(ceil_div(L, kMmaBQ)), static_cast<unsigned>(B));
  kernel<<<grid, kMmaThreads, kSmem, stream>>>(q, q_stride, k, v, kv_stride, pad, out, static_cast<int>(L),
                                               static_cast<int>(n_heads), static_cast<int>(group), scale_log2);
  TESSERA_CUDA_TRY_LAUNCH();
  return Status::success();
}

// The tensor-core path for storage type T: casts the untyped pointers and picks the head_dim instantiation.
template <typename T>
Status launch_mma_typed(const void* q, int64_t q_stride, const void* k, const void* v, int64_t kv_stride,
                        const int32_t* pad, void* out, int64_t B, int64_t L, int64_t n_heads, int64_t group,
                        int64_t head_dim, float scale_log2, cudaStream_t stream) {
  const auto* qt = static_cast<const T*>(q);
  const auto* kt = static_cast<const T*>(k);
  const auto* vt = static_cast<const T*>(v);
  auto* ot = static_cast<T*>(out);
  return head_dim == 64
             ? launch_mma<T, 64>(qt, q_stride, kt, vt, kv_stride, pad, ot, B, L, n_heads, group, scale_log2, stream)
             : launch_mma<T, 128>(qt, q_stride, kt, vt, kv_stride, pad, ot, B, L, n_heads, group, scale_log2, stream);
}

}  // namespace

PrefillPath prefill_path(const void* q, int64_t q_stride, const void* k, const void* v, int64_t kv_stride,
                         const void* out, int64_t head_dim, DType dtype) {
  const bool mma_ok = dtype != DType::F32 && (head_dim == 64 || head_dim == 128) && kv_stride % 8 == 0 &&
                      q_stride % 2 == 0 && aligned16(k) && aligned16(v) && (reinterpret_cast<uintptr_t>(q) & 3u) == 0 &&
                      (reinterpret_cast<uintptr_t>(out) & 3u) == 0;
  return mma_ok ? PrefillPath::kMma : PrefillPath::kFma;
}

Status launch_attention_prefill(const void* q, int64_t q_stride, const void* k, const void* v, int64_t kv_stride,
                                const int32_t* pad, void* out, int64_t B, int64_t L, int64_t n_heads,
                                int64_t n_kv_heads, int64_t head_dim, float scale, DType dtype, cudaStream_t stream) {
  if (B == 0 || L == 0) return Status::success();
  const int64_t group = n_heads / n_kv_heads;
  const float scale_log2 = scale * kLog2e;
  if (prefill_path(q, q_stride, k, v, kv_stride, out, head_dim, dtype) == PrefillPath::kMma) {
    return dtype == DType::BF16 ? launch_mma_typed<__nv_bfloat16>(q, q_stride, k, v, kv_stride, pad, out, B, L, n_heads,
                                                                  group, head_dim, scale_log2, stream)
                                : launch_mma_typed<__half>(q, q_stride, k, v, kv_stride, pad, out, B, L, n_heads, group,
                                                           head_dim, scale_log2, stream);
  }
  const size_t smem = fma_smem_bytes(head_dim);
  const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(ceil_div(L, kFmaRows)),
                  static_cast<unsigned>(B));
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    auto kernel = attention_prefill_fma_kernel<T>;
    TESSERA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    kernel<<<grid, kFmaRows * 32, smem, stream>>>(static_cast<const T*>(q), q_stride, static_cast<const T*>(k),
                                                  static_cast<const T*>(v), kv_stride, pad, static_cast<T*>(out),
                                                  static_cast<int>(L), static_cast<int>(n_heads),
                                                  static_cast<int>(group), static_cast<int>(head_dim), scale_log2);
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

Status attention_prefill(const void* q, int64_t q_stride, const void* k, const void* v, int64_t kv_stride,
                         const int32_t* pad, void* out, int64_t B, int64_t L, int64_t n_heads, int64_t n_kv_heads,
                         int64_t head_dim, float scale, DType dtype, cudaStream_t stream) {
  const char* op = "attention_prefill";
  TESSERA_ARG_REQUIRE(op, "B", B >= 0 && B <= 65535, "must be in [0, 65535], got " + std::to_string(B));
  TESSERA_ARG_REQUIRE(op, "L", L >= 0 && L <= (int64_t{1} << 24), "must be in [0, 2^24], got " + std::to_string(L));
  TESSERA_ARG_REQUIRE(op, "n_heads", n_heads > 0 && n_heads <= 65535,
                      "must be in [1, 65535], got " + std::to_string(n_heads));
  TESSERA_ARG_REQUIRE(op, "n_kv_heads", n_kv_heads > 0 && n_heads % n_kv_heads == 0,
                      "must divide n_heads = " + std::to_string(n_heads) + ", got " + std::to_string(n_kv_heads));
  TESSERA_ARG_REQUIRE(op, "head_dim", head_dim >= 2 && head_dim <= kFmaMaxD && head_dim % 2 == 0,
                      "must be even and in [2, 256], got " + std::to_string(head_dim));
  TESSERA_ARG_REQUIRE(op, "q_stride", q_stride >= n_heads * head_dim,
                      "must be >= n_heads * head_dim = " + std::to_string(n_heads * head_dim));
  TESSERA_ARG_REQUIRE(op, "kv_stride", kv_stride >= n_kv_heads * head_dim,
                      "must be >= n_kv_heads * head_dim = " + std::to_string(n_kv_heads * head_dim));
  TESSERA_ARG_REQUIRE(op, "scale", std::isfinite(scale), "must be finite");
  if (B == 0 || L == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "q", q != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "k", k != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "v", v != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "pad", pad != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "out", out != nullptr, "null");
  return launch_attention_prefill(q, q_stride, k, v, kv_stride, pad, out, B, L, n_heads, n_kv_heads, head_dim, scale,
                                  dtype, stream);
}

}  // namespace tessera::gpu
