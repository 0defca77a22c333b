// worker/model/config.h — the shape of a model, read from a Hugging Face config.json or GGUF metadata.
//
// One struct covers both architectures: GPT-2 (learned positions, LayerNorm, GELU, biases) and Llama
// (RoPE, RMSNorm, SwiGLU, GQA).  Reading validates every field it uses and names it in the error.
#pragma once

#include <cstdint>
#include <string>

namespace tessera::formats {
class GgufFile;
}

namespace tessera::model {

enum class Arch { kGpt2, kLlama };
const char* arch_name(Arch arch);

struct ModelConfig {
  Arch arch = Arch::kLlama;
  int64_t n_layers = 0;
  int64_t hidden = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn = 0;
  int64_t vocab = 0;
  int64_t max_ctx = 0;  // trained context length (GPT-2: n_positions)
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tied_embeddings = false;
  int32_t bos_id = -1;
  int32_t eos_id = -1;

  // Throws tessera::Error naming `source` and the offending field when the shape is inconsistent.
  void validate(const std::string& source) const;
};

// Reads <dir>/config.json (model_type "gpt2" or "llama"/"mistral"); unknown architectures are an Error.
ModelConfig read_hf_config(const std::string& dir);
// Reads general.architecture and the <arch>.* keys of a GGUF file.
ModelConfig read_gguf_config(const formats::GgufFile& gguf);

}  // namespace tessera::model
