// kernels/cuda/sampling_search.cuh — the device half of the GPU sampler (sampling.cu): the order of the
// vocabulary, a row and its two views (raw / penalized and temperature-scaled), the bins, fixed-order block
// reductions, and select(): "the first token, in order, at which the running count or quantized mass reaches a
// target" — a bin scan, radix refinement on the 64-bit order key while more than kSampleCandidates tokens are
// left, then an exact ranking of the rest in shared memory. Device code only; included by sampling.cu alone.
// Every function that takes the Smem& must be called by every thread of the block (they synchronize).
#pragma once

#include <cstdint>

#include "kernels/cuda/sampling.cuh"

namespace tessera::gpu::sampling {

using u64 = unsigned long long;

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = kSampleThreads;
constexpr int kWarps = kThreads / 32;
constexpr int kItems = 4;  // logits loaded per thread before they are used: loads in flight per pass
constexpr int kBins = kSampleBins;
constexpr float kBinsPerNat = 11.5415602f;  // 8 / ln 2: a bin is 1/8 octave of weight
constexpr int kDigitBits = 8;
constexpr int kDigits = 1 << kDigitBits;
constexpr int kCap = kSampleCandidates;

static_assert(kThreads % 32 == 0 && kWarps <= 32, "block reductions fold one value per warp");
static_assert(kBins % 32 == 0 && kDigits % 32 == 0, "find_bucket gives each lane an equal slice");

// --- the order --------------------------------------------------------------------------------------------------
// Ascending key = descending value, ties (the same fp32 value, -0 == +0) to the lowest id: a strict total order.
__device__ __forceinline__ uint32_t descending_bits(float v) {
  uint32_t u = __float_as_uint(v);
  if ((u << 1) == 0u) u = 0u;  // -0 sorts with +0
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~ascending;
}
__device__ __forceinline__ u64 order_key(float v, int32_t id) {
  return (static_cast<u64>(descending_bits(v)) << 32) | static_cast<uint32_t>(id);
}
__device__ __forceinline__ int32_t id_of(u64 key) { return static_cast<int32_t>(key & 0xffffffffull); }

// logit - (frequency · count + presence) with the CPU's fp32 roundings (explicit: nvcc would contract to an FMA).
__device__ __forceinline__ float penalize(float x, int32_t count, float frequency, float presence) {
  return __fsub_rn(x, __fadd_rn(__fmul_rn(frequency, static_cast<float>(count)), presence));
}

// --- one row and the two views of it ----------------------------------------------------------------------------
struct Row {
  const float* x;  // [V] raw logits
  int32_t V;
  const uint32_t* mask;     // [ceil(V / 32)]: bit t set = token t is edited (its z comes from the list); or nullptr
  const SampleEdit* edits;  // [n_listed] the row's edited tokens
  int32_t n_listed;
  float presence, frequency, repetition;
  bool masking;  // step < min_tokens: the kSampleStopId tokens are -inf
};

// worker/sampler.h's steps 1–4 on one edited token, in its order and with the CPU's fp32 roundings (explicit:
// nvcc would contract to an FMA).
__device__ __forceinline__ float edited_logit(float x, const SampleEdit& e, const Row& r) {
  float z = x;
  if (e.bias != 0.0f) z = __fadd_rn(z, e.bias);
  if (r.masking && (e.flags & kSampleStopId) != 0u) return -INFINITY;
  if (r.repetition != 1.0f && (e.count > 0 || (e.flags & kSampleInPrompt) != 0u))
    z = z > 0.0f ? __fdiv_rn(z, r.repetition) : __fmul_rn(z, r.repetition);
  if (e.count > 0 && (r.frequency != 0.0f || r.presence != 0.0f)) z = penalize(z, e.count, r.frequency, r.presence);
  return z;
}

// What a search walks: the raw logits (z = x, T = 1: top logprobs) or the sampling logits (penalized, / T).
struct View {
  bool penalized;      // z of the marked tokens comes from the list
  float zmax;          // the largest z of the view
  float inv_t;         // 1 / T
  double q_scale;      // 2^F; 0: a count-only view (no weights needed)
  float min_p = 0.0f;  // > 0: tokens whose weight exp(-gap) is below it are dropped (gap +inf, weight 0)
};

// gap = (zmax - z) / T >= 0; the CPU's weight is exp((z - zmax) * inv_t) = exp(-gap), the same fp32 argument.
// Every step is correctly rounded and monotone in z, so bins never interleave in the order. A token min-p drops
// gets gap +inf: the last bin, weight 0 — never counted as positive, never drawn; the dropped tokens are the last
// of the order, so the bins stay monotone.
__device__ __forceinline__ float gap_of(float z, const View& v) {
  const float gap = __fmul_rn(__fsub_rn(v.zmax, z), v.inv_t);
  return v.min_p > 0.0f && expf(-gap) < v.min_p ? INFINITY : gap;
}
__device__ __forceinline__ int bin_of(float gap) {
  return static_cast<int>(fminf(__fmul_rn(gap, kBinsPerNat), static_cast<float>(kBins - 1)));
}
__device__ __forceinline__ u64 quantize(float w, double scale) {
  return __double2ull_rn(static_cast<double>(w) * scale);  // exact product: scale is a power of two
}
__device__ __forceinline__ u64 quantized_weight(float gap, const View& v) {
  return v.q_scale > 0.0 ? quantize(expf(-gap), v.q_scale) : 0ull;
}

// f(i, x, marked) for every logit of the row; kItems loads per thread are issued before any is used.
template <typename F>
__device__ __forceinline__ void for_each_logit(const Row& r, F&& f) {
  for (int base = 0; base < r.V; base += kThreads * kItems) {
    float x[kItems];
    bool marked[kItems];
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int i = base + k * kThreads + static_cast<int>(threadIdx.x);
      x[k] = i < r.V ? __ldg(r.x + i) : 0.0f;
      // The bitmap was written in this kernel: read it from L2 (ld.global.cg), never through the read-only path.
      marked[k] = i < r.V && r.mask != nullptr && ((__ldcg(r.mask + (i >> 5)) >> (i & 31)) & 1u) != 0u;
    }
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int i = base + k * kThreads + static_cast<int>(threadIdx.x);
      if (i < r.V) f(i, x[k], marked[k]);
    }
  }
}

// f(token, z) for every edited token, z its edited logit.
template <typename F>
__device__ __forceinline__ void for_each_listed(const Row& r, F&& f) {
  if (r.mask == nullptr) return;
  for (int j = static_cast<int>(threadIdx.x); j < r.n_listed; j += kThreads) {
    const SampleEdit e = r.edits[j];
    f(e.token, edited_logit(__ldg(r.x + e.token), e, r));
  }
}

// f(id, z) for every token of the view, once each.
template <typename F>
__device__ __forceinline__ void for_each_token(const Row& r, const View& v, F&& f) {
  for_each_logit(r, [&](int i, float x, bool marked) {
    if (!(v.penalized && marked)) f(i, x);
  });
  if (v.penalized) for_each_listed(r, f);
}

// --- shared memory --------------------------------------------------------------------------------------------
struct Bucket {  // where a search crossed its target: a bin or digit, and the totals of the buckets before it
  int index;     // -1: the target was never reached (an inconsistency; reported as kInternal)
  u64 n_before, mass_before;
};

struct Pick {                 // the token a search found
  u64 key;                    // its order key (id in the low 32 bits)
  u64 n_before, mass_before;  // tokens before it in the order, and their quantized mass
  u64 q;                      // its own quantized weight
};

struct Smem {
  u64 bin_mass[kBins];
  u64 dig_mass[kDigits];
  u64 cand_key[kCap];
  u64 cand_q[kCap];
  alignas(8) unsigned char scratch[kWarps * 8];
  uint32_t bin_n[kBins];  // the sampling view's bins
  uint32_t raw_n[kBins];  // the raw view's bins (top logprobs), when they differ
  uint32_t dig_n[kDigits];
  Bucket bucket;
  Pick pick;
  uint32_t n_cand;
  int32_t found;
  int32_t bad;       // the first bad edit
  int32_t repeated;  // the smallest token listed twice
};

// A fixed-order reduction: xor butterfly in each warp, then every thread folds the warp results in warp order.
// Deterministic for a given block shape, whatever the type. Every thread of the block must call it.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, Smem& s) {
  static_assert(sizeof(T) <= 8, "scratch holds 8 bytes per warp");
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFull, v, o));
  T* part = reinterpret_cast<T*>(s.scratch);
  __syncthreads();  // a previous reduction may still be reading scratch
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = part[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) r = op(r, part[w]);
  return r;
}
struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return b < a ? b : a;
  }
};
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a < b ? b : a;
  }
};
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct FmaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// A thread's run of consecutive tokens in one bucket, added to the shared counters when the bucket changes: a
// nearly flat row (every token in one bin) costs a handful of atomics instead of V conflicting ones.
struct Run {
  int bucket = -1;
  uint32_t n = 0;
  u64 mass = 0;
  __device__ void add(int b, u64 q, uint32_t* cnt, u64* mass_of) {
    if (b != bucket) {
      flush(cnt, mass_of);
      bucket = b;
    }
    ++n;
    mass += q;
  }
  __device__ void flush(uint32_t* cnt, u64* mass_of) {
    if (n > 0) {
      atomicAdd(cnt + bucket, n);
      if (mass_of != nullptr) atomicAdd(mass_of + bucket, mass);
    }
    n = 0;
    mass = 0;
  }
};

// Warp 0: the first of n buckets (counts cnt, masses mass or nullptr) at which the running count (by_mass
// false) or mass reaches target (>= 1). Lane l scans buckets [l·n/32, (l+1)·n/32).
__device__ void find_bucket(const uint32_t* cnt, const u64* mass, int n, bool by_mass, u64 target, Bucket* out) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int per = n / 32, b0 = lane * per;
  u64 sn = 0, sm = 0;
  for (int b = b0; b < b0 + per; ++b) {
    sn += cnt[b];
    if (mass != nullptr) sm += mass[b];
  }
  u64 in = sn, im = sm;  // inclusive scans over the lanes
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u64 tn = __shfl_up_sync(kFull, in, o), tm = __shfl_up_sync(kFull, im, o);
    if (lane >= o) in += tn, im += tm;
  }
  const unsigned hit = __ballot_sync(kFull, (by_mass ? im : in) >= target);
  if (hit == 0u) {
    if (lane == 0) *out = Bucket{-1, 0, 0};
    return;
  }
  if (lane == __ffs(hit) - 1) {
    u64 bn = in - sn, bm = im - sm;
    for (int b = b0; b < b0 + per; ++b) {
      const u64 cn = bn + cnt[b], cm = bm + (mass != nullptr ? mass[b] : 0ull);
      if ((by_mass ? cm : cn) >= target) {
        *out = Bucket{b, bn, bm};
        return;
      }
      bn = cn, bm = cm;
    }
  }
}

// The first token of view v, in order, at which the running count (by_mass false) or quantized mass reaches
// target, 1 <= target <= the bins' total. hist_n / hist_mass: the view's bins (hist_mass nullptr: count-only).
// Returns false (uniformly) on an inconsistency, which cannot happen when the bins were built from v.
__device__ bool select(const Row& r, const View& v, const uint32_t* hist_n, const u64* hist_mass, bool by_mass,
                       u64 target, Smem& s, Pick& out, int& n_passes) {
  const bool with_mass = v.q_scale > 0.0;
  if (threadIdx.x < 32) find_bucket(hist_n, hist_mass, kBins, by_mass, target, &s.bucket);
  __syncthreads();
  const Bucket bin = s.bucket;
  if (bin.index < 0) return false;
  const int b = bin.index;
  u64 n_before = bin.n_before, mass_before = bin.mass_before;
  uint32_t n = hist_n[b];
  // The tokens still in play: bin b, order keys in [lo, hi].
  u64 lo = 0ull, hi = ~0ull;
  bool ranged = false;
  while (n > static_cast<uint32_t>(kCap)) {
    if (!ranged) {  // the bin's key range, so that the first digit splits the bin rather than the key space
      u64 kmin = ~0ull, kmax = 0ull;
      for_each_token(r, v, [&](int id, float z) {
        if (bin_of(gap_of(z, v)) != b) return;
        const u64 k = order_key(z, id);
        kmin = k < kmin ? k : kmin;
        kmax = k > kmax ? k : kmax;
      });
      ++n_passes;
      lo = block_reduce(kmin, MinOp{}, s);
      hi = block_reduce(kmax, MaxOp{}, s);
      ranged = true;
    }
    // More than kCap distinct keys: hi > lo. (hi - lo) >> shift < 2^kDigitBits.
    const int bits = 64 - __clzll(static_cast<long long>(hi - lo));
    const int shift = bits > kDigitBits ? bits - kDigitBits : 0;
    for (int d = static_cast<int>(threadIdx.x); d < kDigits; d += kThreads) s.dig_n[d] = 0, s.dig_mass[d] = 0ull;
    __syncthreads();
    Run run;
    for_each_token(r, v, [&](int id, float z) {
      const float gap = gap_of(z, v);
      if (bin_of(gap) != b) return;
      const u64 k = order_key(z, id);
      if (k < lo || k > hi) return;
      run.add(static_cast<int>((k - lo) >> shift), with_mass ? quantized_weight(gap, v) : 0ull, s.dig_n, s.dig_mass);
    });
    run.flush(s.dig_n, s.dig_mass);
    ++n_passes;
    __syncthreads();
    if (threadIdx.x < 32)
      find_bucket(s.dig_n, with_mass ? s.dig_mass : nullptr, kDigits, by_mass,
                  target - (by_mass ? mass_before : n_before), &s.bucket);
    __syncthreads();
    const Bucket dig = s.bucket;
    if (dig.index < 0) return false;
    n_before += dig.n_before;
    mass_before += dig.mass_before;
    n = s.dig_n[dig.index];
    lo += static_cast<u64>(dig.index) << shift;
    const u64 top = lo + ((1ull << shift) - 1ull);
    hi = top < hi ? top : hi;
    __syncthreads();  // s.bucket and the digits are rewritten by the next level
  }

  // At most kCap tokens left: gather them and rank each against all the others.
  if (threadIdx.x == 0) s.n_cand = 0, s.found = 0;
  __syncthreads();
  for_each_token(r, v, [&](int id, float z) {
    const float gap = gap_of(z, v);
    if (bin_of(gap) != b) return;
    const u64 k = order_key(z, id);
    if (k < lo || k > hi) return;
    const uint32_t slot = atomicAdd(&s.n_cand, 1u);
    if (slot < static_cast<uint32_t>(kCap)) {
      s.cand_key[slot] = k;
      s.cand_q[slot] = with_mass ? quantized_weight(gap, v) : 0ull;
    }
  });
  ++n_passes;
  __syncthreads();
  const uint32_t nc = s.n_cand;
  if (nc != n) return false;
  for (uint32_t c = threadIdx.x; c < nc; c += kThreads) {
    const u64 k = s.cand_key[c], q = s.cand_q[c];
    u64 nb = 0, mb = 0;
    for (uint32_t j = 0; j < nc; ++j) {
      if (s.cand_key[j] < k) ++nb, mb += s.cand_q[j];
    }
    const u64 cn = n_before + nb, cm = mass_before + mb;
    // Exactly one candidate qualifies: the running total first reaches the target on it.
    const bool hit = by_mass ? (cm < target && target <= cm + q) : (cn + 1 == target);
    if (hit) {
      s.pick = Pick{k, cn, cm, q};
      s.found = 1;
    }
  }
  __syncthreads();
  const bool found = s.found != 0;
  if (found) out = s.pick;
  __syncthreads();  // s.pick / s.found are rewritten by the next search
  return found;
}

// ceil(frac · kept) in [1, kept]: the top-p target (the first token whose running mass is >= frac · kept).
__device__ __forceinline__ u64 target_at_least(float frac, u64 kept) {
  const double t = ceil(static_cast<double>(frac) * static_cast<double>(kept));
  if (!(t >= 1.0)) return 1ull;
  if (t >= static_cast<double>(kept)) return kept;
  return static_cast<u64>(t);
}
// floor(u · kept) + 1 in [1, kept]: the draw's target (the first token whose running mass is > u · kept).
__device__ __forceinline__ u64 target_above(float u, u64 kept) {
  const double t = floor(static_cast<double>(u) * static_cast<double>(kept)) + 1.0;
  if (t >= static_cast<double>(kept)) return kept;
  return static_cast<u64>(t);
}

}  // namespace tessera::gpu::sampling
