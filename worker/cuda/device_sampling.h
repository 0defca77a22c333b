// worker/cuda/device_sampling.h — a sequence's sampling settings (worker/sampler.h) as the GPU sampler takes them
// (kernels/cuda's gpu::SampleParams), for the CUDA runner and the sampler's tests. Header-only, pure.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "worker/sampler.h"

namespace tessera::worker {

inline gpu::SampleParams device_sample_params(const sampler::SamplingParams& p, uint64_t step) {
  gpu::SampleParams d;
  d.temperature = p.temperature;
  d.top_p = p.top_p;
  d.top_k = p.top_k;
  d.presence_penalty = p.presence_penalty;
  d.frequency_penalty = p.frequency_penalty;
  d.n_logprobs = p.n_logprobs;
  d.seed = p.seed;
  d.step = step;
  return d;
}

}  // namespace tessera::worker
