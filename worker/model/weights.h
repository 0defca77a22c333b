// worker/model/weights.h — a model's weights in memory (fp32), loaded from a GGUF file or a HF directory.
//
// In: a path (a .gguf file, or a directory with config.json + *.safetensors).  Out: ModelConfig + fp32 weights
// in the layout the engine wants: nn.Linear's [out, in]; Q, K and V rows stacked into one [q|k|v] matrix;
// Llama's gate and up rows stacked into one [gate|up] matrix; GPT-2's Conv1D weights transposed; GGUF's
// llama.cpp RoPE row permutation of Q and K undone.  Every tensor's shape is checked against the config;
// a missing tensor, a wrong shape, an unknown dtype or a truncated file is a tessera::Error naming the file
// and the tensor.  Immutable after load; safe to share between threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parallel/sharding.h"
#include "worker/model/config.h"

namespace tessera::formats {
class TensorSource;
}

namespace tessera::model {

struct LayerWeights {
  std::vector<float> attn_norm_w, attn_norm_b;  // [hidden]; _b only for GPT-2
  std::vector<float> wqkv;                      // [(n_heads + 2 * n_kv_heads) * head_dim, hidden]
  std::vector<float> bqkv;                      // [(n_heads + 2 * n_kv_heads) * head_dim] or empty
  std::vector<float> wo;                        // [hidden, n_heads * head_dim]
  std::vector<float> bo;                        // [hidden] or empty
  std::vector<float> ffn_norm_w, ffn_norm_b;    // [hidden]
  std::vector<float> w_up;    // Llama: [2 * ffn, hidden] (gate rows, then up rows); GPT-2: [ffn, hidden]
  std::vector<float> b_up;    // GPT-2: [ffn]
  std::vector<float> w_down;  // [hidden, ffn]
  std::vector<float> b_down;  // GPT-2: [hidden]
};

// With a tensor-parallel shard (parallel/sharding.h) only the rank's slices are read from the mapped file:
// Q/K/V rows of its heads, attention-output and FFN-down columns, FFN up/gate rows, vocabulary rows of the
// embedding and lm_head; norms and the biases of row-split layers are replicated.
struct ModelWeights {
  ModelConfig config;
  parallel::Shard shard;   // what this rank holds (the whole model at TP = 1)
  std::vector<float> wte;  // [vocab, hidden]
  std::vector<float> wpe;  // GPT-2: [max_ctx, hidden]
  std::vector<float> final_norm_w, final_norm_b;
  std::vector<float> lm_head;  // [vocab, hidden]; empty when tied to wte
  std::vector<LayerWeights> layers;

  const std::vector<float>& output_matrix() const { return lm_head.empty() ? wte : lm_head; }
  size_t n_bytes() const;
};

// True when `path` names a GGUF file (by its magic), false for a directory.
bool is_gguf_path(const std::string& path);
// Reads the config only (cheap: no tensor data is touched).
ModelConfig read_model_config(const std::string& path);
parallel::ShardShape shard_shape(const ModelConfig& config);
// Throws tessera::Error when tp_size cannot split the model (naming the sizes that can).
ModelWeights load_weights(const std::string& path, int tp_rank = 0, int tp_size = 1);

}  // namespace tessera::model
