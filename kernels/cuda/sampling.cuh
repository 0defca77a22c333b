// kernels/cuda/sampling.cuh — the GPU sampler (sample_tokens in cuda_ops.h): what its tests look at.
//
// Algorithm (sampling.cu), one block of kSampleThreads threads per row, every pass a read of the row (from L2):
//   A. raw max, the first non-finite logit (→ error), the edited max. Edits (logit_bias, the min_tokens mask,
//      the penalties): the row's SampleEdit list sets bits in a per-row bitmap (the workspace), so a pass reads
//      x[i] for the unmarked tokens and the list for the marked ones — the edited logits are never written out.
//   B. the raw normalizer sum(exp(x - max)) (double, fixed order), raw and edited argmax (lowest id), and,
//      when the row samples, its weights w = expf((z - zmax) / T) (0 when min-p drops it) into kSampleBins bins
//      of 1/8 octave of weight (count and mass, the mass quantized to integers of 2^-sample_mass_bits(V): integer sums
//      are exact, so their order does not matter and the bins, the digits and the walk below agree to the last unit).
//   Then each of top-k (count), top-p (mass, ≥) and the draw (mass, >) is one search for "the first token, in
//   descending-logit order with ties to the lowest id, at which the running count / mass reaches a target":
//   the bin where it happens (a warp scan over the bins), then, when that bin holds more than
//   kSampleCandidates tokens, radix refinement on the 64-bit order key (logit bits, id) 8 bits per pass, and
//   finally a gather of the few tokens left into shared memory, ranked exactly. Top logprobs: the same search
//   by count on the raw logits, then a gather of the n tokens at or before the n-th.
// Cost: no sort of the vocabulary; a sampled row costs 3 passes + 1 per top-k / top-p search (+2 or more when
// the crossing bin holds more than kSampleCandidates tokens, as in nearly flat rows), a greedy one 2, top
// logprobs +2. A row runs on one SM, so B = 1 is latency-bound; B >= the SM count fills the GPU.
// Precision contract (details in sampling.cu): greedy tokens, top-k membership and the top logprobs' ids are
// exactly the CPU's (the same fp32 order); logprobs within 1e-5; a sampled token differs from worker/sampler.cpp's
// only when the CPU's target lies within ~1e-6 (relative) of a CDF boundary (its weights come from glibc's expf,
// ours from CUDA's, a few ulp apart). Deterministic: integer atomics only, fixed-order float reductions.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu {

inline constexpr int kSampleThreads = 512;     // one block per row
inline constexpr int kSampleBins = 1216;       // 1/8 octave of weight each; the last one takes every weight < e^-105
inline constexpr int kSampleCandidates = 256;  // a search ranks at most this many tokens in shared memory

// F: the sampler's weights (in (0, 1]) are summed as integers rint(w · 2^F), F = min(52, 63 - ceil(log2 V)), so
// that V of them fit in 64 bits. V = 152064: F = 45, i.e. each weight within 2^-46 of its fp32 value.
int sample_mass_bits(int64_t V);

// out[i] = philox::sampling_uniform(seeds[i], steps[i], draws[i]) computed on the device: the test that the GPU
// draws the CPU's uniforms bit for bit. seeds, steps: [n] uint64; draws: [n] uint32; out: [n] float.
Status sampling_uniforms(const uint64_t* seeds, const uint64_t* steps, const uint32_t* draws, float* out, int64_t n,
                         cudaStream_t stream);

}  // namespace tessera::gpu
