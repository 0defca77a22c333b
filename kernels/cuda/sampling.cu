// kernels/cuda/sampling.cu — the batched sampler: kernel, launcher, op entry. The algorithm is in sampling.cuh.
//
// Exactness. The order of the vocabulary is (edited logit descending, id ascending) on fp32 values that are
// bit-identical to worker/sampler.cpp's (logit_bias, the min_tokens mask and the penalties with the CPU's
// roundings, no FMA contraction); greedy, top-k
// and the top logprobs depend on that order alone, so they are exact. Top-p and the draw compare running sums of
// weights with a target: here the weights are CUDA's expf (<= 2 ulp; glibc's is <= 0.502 ulp) quantized to
// 2^-F (see sample_mass_bits) and the sums are exact integers, the CPU sums its fp32 weights in double. The two
// pick different tokens only when the target lies within about 3e-7 of the running sum (relative) of a boundary,
// and min-p (a weight compared with min_p) only when a weight lies within those few ulp of min_p.
// Every position in the order is compared against the target with integer arithmetic, so the bins, the radix
// digits and the final ranking can never disagree with each other (a search always finds its token).
#include "kernels/cuda/sampling.cuh"

#include <climits>
#include <cmath>
#include <cstdio>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/sampling_search.cuh"
#include "kernels/philox.h"

namespace tessera::gpu {
namespace {

using namespace sampling;

// grid: [B], block: [kThreads]. masks: [B, ceil(V / 32)] (used by rows with edits).
__global__ void __launch_bounds__(kThreads, 1)
    sample_kernel(const float* __restrict__ logits, int32_t V, const SampleParams* __restrict__ params,
                  const int32_t* __restrict__ edit_offsets, const SampleEdit* __restrict__ edits,
                  uint32_t* __restrict__ masks, SampleOut* __restrict__ out, int mass_bits) {
  __shared__ Smem s;
  const int64_t row = blockIdx.x;
  const int tid = static_cast<int>(threadIdx.x);
  const SamplingParams p = params[row].sampling;
  const uint64_t step = params[row].step;
  SampleOut* o = out + row;
  int n_passes = 0;
  // Every branch to fail() below is uniform over the block (it reads values every thread holds).
  auto fail = [&](SampleError code, int32_t index, float value) {
    if (tid == 0) {
      o->token = -1;
      o->logprob = 0.0f;
      o->n_top = 0;
      o->error = code;
      o->error_index = index;
      o->error_value = value;
      o->n_passes = n_passes;
    }
  };
  if (p.first_invalid() != nullptr) return fail(SampleError::kBadParams, -1, 0.0f);

  const bool masking = step < static_cast<uint64_t>(p.min_tokens);
  Row r{logits + row * V,     V,      nullptr, nullptr, 0, p.presence_penalty, p.frequency_penalty,
        p.repetition_penalty, masking};

  // Edits: mark the listed tokens in this row's bitmap.
  if (edit_offsets != nullptr) {
    const int32_t b0 = edit_offsets[row], b1 = edit_offsets[row + 1];
    if (b0 < 0 || b1 < b0) return fail(SampleError::kBadPenalty, -1, 0.0f);
    if (b1 > b0) {
      const int words = (V + 31) / 32;
      uint32_t* mask = masks + row * words;
      for (int w = tid; w < words; w += kThreads) mask[w] = 0u;
      if (tid == 0) s.bad = INT_MAX, s.repeated = INT_MAX;
      __syncthreads();
      const SampleEdit* list = edits + b0;
      for (int j = tid; j < b1 - b0; j += kThreads) {
        const SampleEdit e = list[j];
        if (e.token < 0 || e.token >= V || e.count < 0 || !(fabsf(e.bias) <= kMaxLogitBiasValue)) {
          atomicMin(&s.bad, j);
        } else {
          const uint32_t bit = 1u << (e.token & 31);
          if (atomicOr(mask + (e.token >> 5), bit) & bit) atomicMin(&s.repeated, e.token);  // listed twice
        }
      }
      __threadfence_block();
      __syncthreads();
      const int32_t out_of_range = s.bad, repeated = s.repeated;
      __syncthreads();                                       // every thread has read s.bad before it is lowered below
      if (out_of_range == INT_MAX && repeated != INT_MAX) {  // report the repeated token's first entry
        for (int j = tid; j < b1 - b0; j += kThreads)
          if (list[j].token == repeated) atomicMin(&s.bad, j);
        __syncthreads();
      }
      const int32_t bad = s.bad;
      if (bad != INT_MAX) return fail(SampleError::kBadPenalty, bad, static_cast<float>(list[bad].token));
      r.mask = mask;
      r.edits = list;
      r.n_listed = b1 - b0;
    }
  }
  const bool penalized = r.mask != nullptr;

  // Pass A: raw max, the first non-finite logit, the penalized max.
  float raw_max = -INFINITY, zmax = -INFINITY;
  int32_t first_bad = INT_MAX;
  for_each_logit(r, [&](int i, float x, bool marked) {
    if (!isfinite(x)) first_bad = i < first_bad ? i : first_bad;
    raw_max = fmaxf(raw_max, x);
    if (!marked) zmax = fmaxf(zmax, x);
  });
  for_each_listed(r, [&](int, float z) { zmax = fmaxf(zmax, z); });
  ++n_passes;
  first_bad = block_reduce(first_bad, MinOp{}, s);
  if (first_bad != INT_MAX) return fail(SampleError::kNonFiniteLogit, first_bad, r.x[first_bad]);
  raw_max = block_reduce(raw_max, FmaxOp{}, s);
  zmax = block_reduce(zmax, FmaxOp{}, s);
  if (zmax == -INFINITY) return fail(SampleError::kAllMasked, -1, 0.0f);  // finite logits: only the mask does this

  const bool greedy = p.greedy() || p.top_k == 1;                // top-k 1 keeps the argmax alone
  const float inv_t = greedy ? 1.0f : __frcp_rn(p.temperature);  // == 1.0f / T, correctly rounded
  const View raw_view{false, raw_max, 1.0f, 0.0};
  const View z_view{penalized, zmax, inv_t, ldexp(1.0, mass_bits), greedy ? 0.0f : p.min_p};
  // No edit, no min-p and T = 1: the sampling weights and bins are the raw ones (one expf per token, one
  // histogram).
  const bool same_view = !greedy && !penalized && inv_t == 1.0f && z_view.min_p == 0.0f;
  const bool want_top = p.n_logprobs > 0;
  const bool raw_bins = want_top && !same_view;

  // Pass B: the raw normalizer, raw and penalized argmax, the bins.
  for (int b = tid; b < kBins; b += kThreads) s.bin_n[b] = 0, s.bin_mass[b] = 0ull, s.raw_n[b] = 0;
  __syncthreads();
  double raw_sum = 0.0;
  int32_t raw_arg = INT_MAX, z_arg = INT_MAX;
  uint32_t n_positive = 0;
  Run run_z, run_raw;
  auto add_sampled = [&](float w, float gap) {
    n_positive += w > 0.0f ? 1u : 0u;
    run_z.add(bin_of(gap), quantize(w, z_view.q_scale), s.bin_n, s.bin_mass);
  };
  for_each_logit(r, [&](int i, float x, bool marked) {
    const float w_raw = expf(__fsub_rn(x, raw_max));  // the CPU's raw weight exp((x - max) * 1)
    raw_sum += static_cast<double>(w_raw);
    if (x == raw_max) raw_arg = i < raw_arg ? i : raw_arg;
    if (raw_bins) run_raw.add(bin_of(gap_of(x, raw_view)), 0ull, s.raw_n, nullptr);
    if (marked) return;
    if (x == zmax) z_arg = i < z_arg ? i : z_arg;
    if (!greedy) {
      const float gap = gap_of(x, z_view);
      add_sampled(same_view ? w_raw : expf(-gap), gap);  // same_view: -gap == x - raw_max exactly
    }
  });
  for_each_listed(r, [&](int t, float z) {
    if (z == zmax) z_arg = t < z_arg ? t : z_arg;
    if (!greedy) {
      const float gap = gap_of(z, z_view);
      add_sampled(expf(-gap), gap);
    }
  });
  run_raw.flush(s.raw_n, nullptr);
  run_z.flush(s.bin_n, s.bin_mass);
  ++n_passes;
  raw_sum = block_reduce(raw_sum, SumOp{}, s);  // its barriers also publish the bins
  raw_arg = block_reduce(raw_arg, MinOp{}, s);
  z_arg = block_reduce(z_arg, MinOp{}, s);
  n_positive = block_reduce(n_positive, SumOp{}, s);
  const double log_sum = log(raw_sum);

  Pick pick;
  int32_t token = z_arg;
  if (!greedy) {
    u64 part = 0ull;
    for (int b = tid; b < kBins; b += kThreads) part += s.bin_mass[b];
    u64 kept = block_reduce(part, SumOp{}, s);  // >= 2^F: the maximum has weight exp(0) = 1
    if (p.top_k >= 1 && static_cast<uint32_t>(p.top_k) < n_positive) {
      if (!select(r, z_view, s.bin_n, s.bin_mass, false, static_cast<u64>(p.top_k), s, pick, n_passes))
        return fail(SampleError::kInternal, 1, 0.0f);
      kept = pick.mass_before + pick.q;
    }
    if (p.top_p < 1.0f) {
      if (!select(r, z_view, s.bin_n, s.bin_mass, true, target_at_least(p.top_p, kept), s, pick, n_passes))
        return fail(SampleError::kInternal, 2, 0.0f);
      kept = pick.mass_before + pick.q;
    }
    const float u = philox::sampling_uniform(p.seed, step, 0);
    if (!select(r, z_view, s.bin_n, s.bin_mass, true, target_above(u, kept), s, pick, n_passes))
      return fail(SampleError::kInternal, 3, 0.0f);
    token = id_of(pick.key);
  }

  int32_t n_top = 0;
  if (want_top) {
    n_top = p.n_logprobs < V ? p.n_logprobs : V;
    if (!select(r, raw_view, same_view ? s.bin_n : s.raw_n, nullptr, false, static_cast<u64>(n_top), s, pick, n_passes))
      return fail(SampleError::kInternal, 4, 0.0f);
    const u64 last = pick.key;  // the n_top-th token: the answer is every token at or before it
    if (tid == 0) s.n_cand = 0;
    __syncthreads();
    for_each_token(r, raw_view, [&](int i, float x) {
      const u64 k = order_key(x, i);
      if (k > last) return;
      const uint32_t slot = atomicAdd(&s.n_cand, 1u);
      if (slot < static_cast<uint32_t>(kCap)) s.cand_key[slot] = k;
    });
    ++n_passes;
    __syncthreads();
    if (s.n_cand != static_cast<uint32_t>(n_top)) return fail(SampleError::kInternal, 5, 0.0f);
  }

  if (tid == 0) {
    auto logprob = [&](int32_t id) {
      return static_cast<float>((static_cast<double>(r.x[id]) - static_cast<double>(raw_max)) - log_sum);
    };
    for (int i = 1; i < n_top; ++i) {  // insertion sort of at most kSampleMaxLogprobs keys
      const u64 k = s.cand_key[i];
      int j = i;
      for (; j > 0 && s.cand_key[j - 1] > k; --j) s.cand_key[j] = s.cand_key[j - 1];
      s.cand_key[j] = k;
    }
    for (int i = 0; i < n_top; ++i) {
      const int32_t id = id_of(s.cand_key[i]);
      o->top_ids[i] = id;
      o->top_logprobs[i] = logprob(id);
    }
    o->token = token;
    o->logprob = logprob(token);
    o->n_top = n_top;
    o->error = SampleError::kNone;
    o->error_index = -1;
    o->error_value = 0.0f;
    o->n_passes = n_passes;
  }
}

__global__ void uniforms_kernel(const uint64_t* seeds, const uint64_t* steps, const uint32_t* draws, float* out,
                                int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = philox::sampling_uniform(seeds[i], steps[i], draws[i]);
}

constexpr int64_t kMaxVocab = int64_t{1} << 24;

std::string show(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
  return buf;
}

}  // namespace

int sample_mass_bits(int64_t V) {
  int log2v = 0;
  while ((int64_t{1} << log2v) < V) ++log2v;
  return 63 - log2v < 52 ? 63 - log2v : 52;
}

size_t sample_workspace_bytes(int64_t B, int64_t V) {
  return static_cast<size_t>(B) * static_cast<size_t>((V + 31) / 32) * sizeof(uint32_t);
}

Status sample_tokens(const float* logits, int64_t B, int64_t V, const SampleParams* params, const int32_t* edit_offsets,
                     const SampleEdit* edits, void* workspace, size_t workspace_bytes, SampleOut* out,
                     cudaStream_t stream) {
  const char* op = "sample_tokens";
  TESSERA_ARG_REQUIRE(op, "B", B >= 0 && B <= INT_MAX, "must be in [0, 2^31), got " + std::to_string(B));
  TESSERA_ARG_REQUIRE(op, "V", V >= 1 && V <= kMaxVocab, "must be in [1, 2^24], got " + std::to_string(V));
  if (B == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "logits", logits != nullptr, "is null");
  TESSERA_ARG_REQUIRE(op, "params", params != nullptr, "is null");
  TESSERA_ARG_REQUIRE(op, "out", out != nullptr, "is null");
  const bool all = edit_offsets != nullptr && edits != nullptr;
  TESSERA_ARG_REQUIRE(op, "edit_offsets", (edit_offsets != nullptr) == (edits != nullptr),
                      "edit_offsets and edits must be both null or both set");
  if (all) {
    const size_t need = sample_workspace_bytes(B, V);
    TESSERA_ARG_REQUIRE(op, "workspace", workspace != nullptr && workspace_bytes >= need,
                        "needs " + std::to_string(need) + " bytes, got " + std::to_string(workspace_bytes));
    TESSERA_ARG_REQUIRE(op, "workspace", (reinterpret_cast<uintptr_t>(workspace) & 3u) == 0, "must be 4-byte aligned");
  }
  sample_kernel<<<static_cast<unsigned>(B), kThreads, 0, stream>>>(
      logits, static_cast<int32_t>(V), params, edit_offsets, edits, static_cast<uint32_t*>(workspace), out,
      sample_mass_bits(V));
  TESSERA_CUDA_TRY_LAUNCH();
  return Status::success();
}

std::string sample_error_text(const SampleOut& out, int64_t row) {
  const std::string at = "row " + std::to_string(row) + ": ";
  switch (out.error) {
    case SampleError::kNone:
      return "";
    case SampleError::kNonFiniteLogit:
      return at + "logits[" + std::to_string(out.error_index) + "] is " + show(out.error_value) +
             ": the model produced a non-finite logit";
    case SampleError::kBadPenalty:
      if (out.error_index < 0) return at + "edit offsets decrease or are negative";
      return at + "edit " + std::to_string(out.error_index) + " (token " +
             std::to_string(static_cast<int64_t>(out.error_value)) +
             ") is outside the vocabulary, has a negative count, a bias outside [-100, 100] or repeats a token";
    case SampleError::kAllMasked:
      return at + "min_tokens masks every token of the vocabulary: nothing can be sampled";
    case SampleError::kBadParams:
      return at +
             "sampling parameters out of range (temperature >= 0, top_p in (0, 1], top_k >= -1, penalties in "
             "[-2, 2], n_logprobs in [0, 20], min_p in [0, 1], repetition_penalty in (0, 2], min_tokens >= 0)";
    case SampleError::kInternal:
      return at + "internal error in the GPU sampler (search " + std::to_string(out.error_index) + " found no token)";
  }
  return at + "unknown sampler error " + std::to_string(static_cast<int32_t>(out.error));
}

Status sampling_uniforms(const uint64_t* seeds, const uint64_t* steps, const uint32_t* draws, float* out, int64_t n,
                         cudaStream_t stream) {
  const char* op = "sampling_uniforms";
  TESSERA_ARG_REQUIRE(op, "n", n >= 0, "must be >= 0");
  if (n == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "seeds", seeds != nullptr && steps != nullptr && draws != nullptr && out != nullptr,
                      "null pointer");
  constexpr int kBlock = 256;
  uniforms_kernel<<<ceil_div(n, kBlock), kBlock, 0, stream>>>(seeds, steps, draws, out, n);
  TESSERA_CUDA_TRY_LAUNCH();
  return Status::success();
}

}  // namespace tessera::gpu
