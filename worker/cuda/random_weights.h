// worker/cuda/random_weights.h — synthetic models: random weights in a real shape, made from a seed in memory
// (DESIGN.md: "made from a name and a seed, never downloaded"), for GPU-vs-CPU checks and benchmarks.
//
// In: a ModelConfig (validated here) and a seed. Out: the whole model (TP = 1) as ModelWeights, every tensor
// filled with uniform noise of a stated standard deviation: matrices 1/sqrt(fan_in), the output matrix
// 2/sqrt(hidden) (logits spread over a few units, so top-1 is not a coin toss), norms 1 ± 0.1, biases ± 0.02.
// Deterministic for (config, seed) on every machine (splitmix64, no <random> distributions). Thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "worker/model/weights.h"

namespace tessera::model {

ModelWeights make_random_weights(const ModelConfig& config, uint64_t seed);

// A Llama / GPT-2 config in a named shape: "llama-2048" (hidden 2048, 16 heads, 4 KV heads, 4 layers,
// vocab 32000, FFN 5632, head_dim 128) and "gpt2-medium" (hidden 1024, 16 heads, 24 layers, vocab 50257,
// 1024 positions). Throws tessera::Error for another name.
ModelConfig synthetic_config(const std::string& name);

}  // namespace tessera::model
