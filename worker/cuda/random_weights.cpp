// worker/cuda/random_weights.cpp — see random_weights.h.
#include "worker/cuda/random_weights.h"

#include <cmath>
#include <string>

#include "common/check.h"

namespace tessera::model {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Each tensor gets its own stream (seed, tensor number); element i is a function of (stream, i) alone.
class Filler {
 public:
  explicit Filler(uint64_t seed) : seed_(seed) {}
  // n values of mean `mean` and standard deviation `std` (uniform on mean ± std·sqrt(3)).
  HostTensor operator()(int64_t rows, int64_t cols, float std, float mean = 0.0f) {
    const int64_t n = rows * cols;
    const uint64_t stream = splitmix64(seed_ ^ splitmix64(++tensor_));
    std::vector<float> v(static_cast<size_t>(n));
    const float half_width = std * std::sqrt(3.0f);
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t r = splitmix64(stream + static_cast<uint64_t>(i));
      const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      v[static_cast<size_t>(i)] = mean + (2.0f * u - 1.0f) * half_width;
    }
    return HostTensor::f32(std::move(v), rows, cols);
  }

 private:
  uint64_t seed_, tensor_ = 0;
};

}  // namespace

ModelWeights make_random_weights(const ModelConfig& c, uint64_t seed) {
  c.validate("synthetic model");
  ModelWeights w;
  w.config = c;
  w.shard = parallel::make_shard(shard_shape(c), 0, 1);
  Filler fill(seed);
  const bool llama = c.arch == Arch::kLlama;
  const int64_t H = c.hidden, D = c.head_dim, qkv = (c.n_heads + 2 * c.n_kv_heads) * D, F = c.ffn;
  const float s_h = 1.0f / std::sqrt(static_cast<float>(H)), s_out = 2.0f / std::sqrt(static_cast<float>(H));
  w.wte = fill(c.vocab, H, c.tied_embeddings ? s_out : 0.02f);
  if (!llama) w.wpe = fill(c.max_ctx, H, 0.01f);
  w.final_norm_w = fill(1, H, 0.1f, 1.0f);
  if (!llama) w.final_norm_b = fill(1, H, 0.02f);
  if (!c.tied_embeddings) w.lm_head = fill(c.vocab, H, s_out);
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (auto& L : w.layers) {
    L.attn_norm_w = fill(1, H, 0.1f, 1.0f);
    L.wqkv = fill(qkv, H, s_h);
    L.wo = fill(H, c.n_heads * D, 1.0f / std::sqrt(static_cast<float>(c.n_heads * D)));
    L.ffn_norm_w = fill(1, H, 0.1f, 1.0f);
    L.w_up = fill((llama ? 2 : 1) * F, H, s_h);
    L.w_down = fill(H, F, 1.0f / std::sqrt(static_cast<float>(F)));
    if (!llama) {
      L.attn_norm_b = fill(1, H, 0.02f);
      L.bqkv = fill(1, qkv, 0.02f);
      L.bo = fill(1, H, 0.02f);
      L.ffn_norm_b = fill(1, H, 0.02f);
      L.b_up = fill(1, F, 0.02f);
      L.b_down = fill(1, H, 0.02f);
    }
  }
  return w;
}

ModelConfig synthetic_config(const std::string& name) {
  ModelConfig c;
  if (name == "llama-2048") {
    c.arch = Arch::kLlama;
    c.n_layers = 4;
    c.hidden = 2048;
    c.n_heads = 16;
    c.n_kv_heads = 4;
    c.head_dim = 128;
    c.ffn = 5632;
    c.vocab = 32000;
    c.max_ctx = 4096;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.tied_embeddings = false;
  } else if (name == "gpt2-medium") {
    c.arch = Arch::kGpt2;
    c.n_layers = 24;
    c.hidden = 1024;
    c.n_heads = 16;
    c.n_kv_heads = 16;
    c.head_dim = 64;
    c.ffn = 4096;
    c.vocab = 50257;
    c.max_ctx = 1024;
    c.norm_eps = 1e-5f;
    c.tied_embeddings = true;
  } else {
    throw Error("unknown synthetic model '" + name + "' (known: llama-2048, gpt2-medium)");
  }
  c.validate("synthetic model " + name);
  return c;
}

}  // namespace tessera::model
