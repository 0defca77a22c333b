// worker/sampling_wire.h — SamplingParams ⇄ the wire's SeqSampling: one conversion for the coordinator (which
// validates requests and writes plans) and the workers (which sample).
#pragma once

#include "parallel/transport.h"
#include "worker/sampler.h"

namespace tessera::worker {

inline sampler::SamplingParams to_sampling_params(const parallel::SeqSampling& s) {
  sampler::SamplingParams p;
  p.temperature = s.temperature;
  p.top_p = s.top_p;
  p.top_k = s.top_k;
  p.presence_penalty = s.presence_penalty;
  p.frequency_penalty = s.frequency_penalty;
  p.seed = s.seed;
  p.n_logprobs = s.n_logprobs;
  return p;
}

inline parallel::SeqSampling to_seq_sampling(const sampler::SamplingParams& p) {
  return {p.temperature, p.top_p, p.top_k, p.presence_penalty, p.frequency_penalty, p.seed, p.n_logprobs};
}

}  // namespace tessera::worker
