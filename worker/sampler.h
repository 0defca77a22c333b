// worker/sampler.h — the last stage of a worker's step: one row of logits in, one token (+ logprobs) out.
//
// In: the full-vocabulary logits of one sequence (after the lm_head gather), its SamplingParams, the decode
// step and the counts of the tokens it has generated so far. Out: the token, its logprob and the top logprobs.
//
// Guarantees
// - Pure function of (logits, params, step, generated_counts): the same inputs give the same token whatever
//   else is in the batch, on any thread, at any tensor-parallel size. The randomness is one Philox4x32-10
//   uniform keyed by (seed, step) — kernels/philox.h, the same function the GPU sampler uses.
// - Processing order (vLLM v1's: logits processors that can change the argmax, then penalties, then greedy or
//   temperature, then min-p, top-k and top-p):
//     1. logit_bias (SamplingLists): logit[t] += bias[t].
//     2. min_tokens: while step < min_tokens (step = tokens generated so far), logit[t] = -inf for every t in
//        SamplingLists::stop_ids, so that neither EOS nor a stop_token_id can end the sequence early. (vLLM
//        masks before it adds the bias; -inf + bias = -inf, so the two orders agree.)
//     3. repetition penalty, over the prompt's tokens and the generated ones, each token once:
//          logit[t] > 0 ? logit[t] / repetition_penalty : logit[t] * repetition_penalty
//     4. presence / frequency penalties, over generated tokens only:
//          logit[t] -= frequency_penalty * count[t] + presence_penalty * (count[t] > 0)
//     5. temperature: below kGreedyTemperature (0 included) → greedy: argmax of the processed logits, ties to
//        the lowest token id; steps 6–9 are skipped. Otherwise weights w = exp((z - max z) / T) (the largest 1).
//     6. min-p (> 0): drop the tokens with w < min_p, i.e. probability < min_p × the largest probability.
//     7. top-k (top_k ≥ 1 and < the tokens left): keep the k most probable tokens (ties by lowest id).
//     8. top-p (< 1): keep the smallest prefix, in descending-probability order (ties by lowest id), whose
//        probability renormalized over the survivors so far is ≥ top_p; always at least one token.
//     9. draw: u = philox(seed, counter (step, 0)) in [0, 1); inverse CDF over the kept tokens in descending-
//        probability order (ties by lowest id): the first token whose cumulative probability exceeds u times
//        the kept mass. A token whose probability underflows to 0 in fp32 is never drawn.
//   Steps 1–4 are exact fp32 operations in this order (no contraction), so the GPU sampler reproduces them bit
//   for bit.
// - Logprobs (`logprob`, `top_logprobs`) come from the RAW model distribution, log_softmax(logits), before
//   logit_bias, the min_tokens mask, penalties, temperature, min-p, top-k and top-p — what vLLM returns by default — so
//   they describe the model, not the sampling settings. top_logprobs lists the n_logprobs most probable tokens of that
//   distribution, descending, ties by lowest id.
// - Cost for vocab V (49152–152064): a few O(V) passes (one expf per token for the raw normalizer, one more
//   when T != 1 or a penalty applies); a weight histogram bounds which tokens the top-k / top-p / CDF walks
//   can reach, only those are gathered, and among them a sorted prefix grows as the walk needs it. No full
//   sort happens unless the distribution is nearly flat (all weights within 1/8 octave).
// Errors: invalid parameters (SamplingParams::validate and SamplingLists::validate, common/sampling.h) and
// non-finite logits throw tessera::Error naming the field / index. Masking every token (min_tokens with a
// stop_ids list that covers the vocabulary) throws too.
// A token id out of range in generated_counts is a caller bug (TESSERA_CHECK).
// Thread-safety: sample() is reentrant (scratch buffers are thread_local).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/sampling.h"

namespace tessera::sampler {

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;                                 // log_softmax(raw logits)[token]
  std::vector<std::pair<int32_t, float>> top_logprobs;  // (token, raw logprob), descending, n_logprobs long
};

// Samples one token from `logits` ([vocab], the raw lm_head output) for decode step `step` of a request.
// generated_counts: token → how many times this sequence has generated it (prompt tokens excluded); `step` is
// also the number of tokens generated so far (min_tokens counts against it).
SampleResult sample(std::span<const float> logits, const SamplingParams& p, uint64_t step,
                    const std::unordered_map<int32_t, int32_t>& generated_counts, const SamplingLists& lists);
// The same with every list empty.
SampleResult sample(std::span<const float> logits, const SamplingParams& p, uint64_t step,
                    const std::unordered_map<int32_t, int32_t>& generated_counts);

}  // namespace tessera::sampler
