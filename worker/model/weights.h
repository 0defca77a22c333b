// worker/model/weights.h — a model's weights in host memory, in their file's type, loaded from a GGUF file or a HF
// directory.
//
// In: a path (a .gguf file, or a directory with config.json + *.safetensors).  Out: ModelConfig + the weights in the
// layout the engine wants: nn.Linear's [out, in]; Q, K and V rows stacked into one [q|k|v] matrix; Llama's gate and
// up rows stacked into one [gate|up] matrix; GPT-2's Conv1D weights transposed; GGUF's llama.cpp RoPE row
// permutation of Q and K undone.  Every tensor's shape is checked against the config; a missing tensor, a wrong
// shape, an unknown dtype or a truncated file is a tessera::Error naming the file and the tensor.
// Storage: matrices keep the file's type (fp32, fp16, bf16, GGUF's Q8_0, Q4_0, Q4_1, Q4_K, Q6_K; kernels/tensor.h)
// and, where the file's layout is the engine's (a whole matrix, or a rank's rows of one), are views of the memory-
// mapped file: nothing is copied and only the pages a rank reads become resident. A stacked matrix is copied once,
// still in its type; a GPT-2 Conv1D weight ([in, out]) is an fp32 view stored transposed when the file holds fp32
// and a rank's output columns are one range, else transposed into fp32; a column slice not in whole blocks or stacked
// parts of different types are converted to fp32. Norm weights, biases and GPT-2's position table are fp32.
// LoadOptions::keep_types = false gives fp32 everywhere (what a backend that converts at upload may ask for). Immutable
// after load; safe to share between threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/sharding.h"
#include "worker/model/config.h"

namespace tessera::formats {
class TensorSource;
}

namespace tessera::model {

// One weight in host memory: [rows, cols] of `dtype`, dense. `data` points into `own` or into the mapped file that
// ModelWeights::source keeps open. Copies share the bytes.
struct HostTensor {
  ops::DType dtype = ops::DType::F32;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;  // nullptr: absent
  std::shared_ptr<const std::vector<uint8_t>> own;
  // fp32 stored transposed ([cols, rows], row stride ld): a GPT-2 Conv1D weight viewed in the file (ops::Tensor's
  // `transposed`).
  bool transposed = false;
  int64_t ld = 0;

  static HostTensor f32(std::vector<float> values, int64_t rows, int64_t cols);
  bool empty() const { return data == nullptr; }
  bool is_view() const { return data != nullptr && own == nullptr; }
  int64_t numel() const { return rows * cols; }
  size_t nbytes() const { return empty() ? 0 : ops::dtype_nbytes(dtype, numel()); }
  const float* f32_data() const;      // dtype F32 only
  std::vector<float> to_f32() const;  // dequantized
  ops::Tensor tensor() const {
    ops::Tensor t = ops::Tensor::dense(data, dtype, rows, cols);
    if (transposed) {
      t.stride = ld;
      t.transposed = true;
    }
    return t;
  }
};

struct LayerWeights {
  HostTensor attn_norm_w, attn_norm_b;  // [1, hidden]; _b only for GPT-2
  HostTensor wqkv;                      // [(n_heads + 2 * n_kv_heads) * head_dim, hidden]
  HostTensor bqkv;                      // [1, (n_heads + 2 * n_kv_heads) * head_dim] or empty
  HostTensor wo;                        // [hidden, n_heads * head_dim]
  HostTensor bo;                        // [1, hidden] or empty
  HostTensor ffn_norm_w, ffn_norm_b;    // [1, hidden]
  HostTensor w_up;                      // Llama: [2 * ffn, hidden] (gate rows, then up rows); GPT-2: [ffn, hidden]
  HostTensor b_up;                      // GPT-2: [1, ffn]
  HostTensor w_down;                    // [hidden, ffn]
  HostTensor b_down;                    // GPT-2: [1, hidden]
};

// With a tensor-parallel shard (parallel/sharding.h) only the rank's slices are read from the mapped file:
// Q/K/V rows of its heads, attention-output and FFN-down columns, FFN up/gate rows, vocabulary rows of the
// embedding and lm_head; norms and the biases of row-split layers are replicated.
struct ModelWeights {
  ModelConfig config;
  parallel::Shard shard;                                // what this rank holds (the whole model at TP = 1)
  std::shared_ptr<const formats::TensorSource> source;  // the mapped file the views point into
  HostTensor wte;                                       // [vocab, hidden]
  HostTensor wpe;                                       // GPT-2: [max_ctx, hidden]
  HostTensor final_norm_w, final_norm_b;
  HostTensor lm_head;  // [vocab, hidden]; empty when tied to wte
  std::vector<LayerWeights> layers;

  const HostTensor& output_matrix() const { return lm_head.empty() ? wte : lm_head; }
  size_t n_bytes() const;         // every tensor's bytes in its storage type
  size_t n_mapped_bytes() const;  // of which views of the mapped file
};

struct LoadOptions {
  bool keep_types = true;  // false: every weight converted to fp32
};

// True when `path` names a GGUF file (by its magic), false for a directory.
bool is_gguf_path(const std::string& path);
// Reads the config only (cheap: no tensor data is touched).
ModelConfig read_model_config(const std::string& path);
parallel::ShardShape shard_shape(const ModelConfig& config);
// Throws tessera::Error when tp_size cannot split the model (naming the sizes that can).
ModelWeights load_weights(const std::string& path, int tp_rank = 0, int tp_size = 1, LoadOptions options = {});

}  // namespace tessera::model
