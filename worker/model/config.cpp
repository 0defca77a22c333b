// worker/model/config.cpp — ModelConfig from config.json (nlohmann-json) or GGUF metadata.
#include "worker/model/config.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/check.h"
#include "formats/gguf.h"

namespace tessera::model {

const char* arch_name(Arch arch) { return arch == Arch::kGpt2 ? "gpt2" : "llama"; }

void ModelConfig::validate(const std::string& source) const {
  auto fail = [&](const std::string& field, int64_t value) {
    throw Error(source + ": invalid model config: " + field + " = " + std::to_string(value));
  };
  if (n_layers <= 0 || n_layers > 1024) fail("n_layers", n_layers);
  if (hidden <= 0 || hidden > (1 << 20)) fail("hidden_size", hidden);
  if (n_heads <= 0 || hidden % n_heads != 0) fail("num_attention_heads", n_heads);
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0) fail("num_key_value_heads", n_kv_heads);
  if (head_dim <= 0 || head_dim % 2 != 0) fail("head_dim", head_dim);
  if (ffn <= 0) fail("intermediate_size", ffn);
  if (vocab <= 0 || vocab > (1 << 24)) fail("vocab_size", vocab);
  if (max_ctx <= 0) fail("max_position_embeddings", max_ctx);
  if (!(norm_eps > 0.0f)) throw Error(source + ": invalid model config: norm epsilon must be > 0");
  if (arch == Arch::kLlama && !(rope_theta > 0.0f))
    throw Error(source + ": invalid model config: rope_theta must be > 0");
}

namespace {

using nlohmann::json;

template <typename T>
T json_get(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) throw Error(source + ": missing key '" + key + "'");
  try {
    return j[key].get<T>();
  } catch (const json::exception&) {
    throw Error(source + ": key '" + key + "' has the wrong type (" + j[key].type_name() + ")");
  }
}

template <typename T>
T json_get_or(const json& j, const char* key, T fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  return json_get<T>(j, key, source);
}

int32_t json_token_id(const json& j, const char* key) {
  // bos/eos may be an int, a list of ints (Llama 3: the first one is the canonical id) or absent.
  if (!j.contains(key)) return -1;
  if (j[key].is_number_integer()) return j[key].get<int32_t>();
  if (j[key].is_array() && !j[key].empty() && j[key][0].is_number_integer()) return j[key][0].get<int32_t>();
  return -1;
}

}  // namespace

ModelConfig read_hf_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open (is '" + dir + "' a Hugging Face model directory?)");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
  const auto model_type = json_get<std::string>(j, "model_type", path);
  ModelConfig c;
  if (model_type == "gpt2") {
    c.arch = Arch::kGpt2;
    c.n_layers = json_get<int64_t>(j, "n_layer", path);
    c.hidden = json_get<int64_t>(j, "n_embd", path);
    c.n_heads = json_get<int64_t>(j, "n_head", path);
    c.n_kv_heads = c.n_heads;
    c.ffn = json_get_or<int64_t>(j, "n_inner", 4 * c.hidden, path);
    c.vocab = json_get<int64_t>(j, "vocab_size", path);
    c.max_ctx = json_get<int64_t>(j, "n_positions", path);
    c.norm_eps = json_get_or<float>(j, "layer_norm_epsilon", 1e-5f, path);
    c.tied_embeddings = json_get_or<bool>(j, "tie_word_embeddings", true, path);
    const auto act = json_get_or<std::string>(j, "activation_function", "gelu_new", path);
    if (act != "gelu_new" && act != "gelu_pytorch_tanh")
      throw Error(path + ": activation_function '" + act + "' is not supported (gelu_new)");
  } else if (model_type == "llama" || model_type == "mistral") {
    c.arch = Arch::kLlama;
    c.n_layers = json_get<int64_t>(j, "num_hidden_layers", path);
    c.hidden = json_get<int64_t>(j, "hidden_size", path);
    c.n_heads = json_get<int64_t>(j, "num_attention_heads", path);
    c.n_kv_heads = json_get_or<int64_t>(j, "num_key_value_heads", c.n_heads, path);
    c.ffn = json_get<int64_t>(j, "intermediate_size", path);
    c.vocab = json_get<int64_t>(j, "vocab_size", path);
    c.max_ctx = json_get<int64_t>(j, "max_position_embeddings", path);
    c.norm_eps = json_get_or<float>(j, "rms_norm_eps", 1e-6f, path);
    c.rope_theta = json_get_or<float>(j, "rope_theta", 10000.0f, path);
    c.tied_embeddings = json_get_or<bool>(j, "tie_word_embeddings", false, path);
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
      throw Error(path + ": key 'rope_scaling' is not supported yet");
    const auto act = json_get_or<std::string>(j, "hidden_act", "silu", path);
    if (act != "silu") throw Error(path + ": hidden_act '" + act + "' is not supported (silu)");
  } else {
    throw Error(path + ": model_type '" + model_type + "' is not supported (gpt2, llama, mistral)");
  }
  c.head_dim = c.n_heads > 0 ? json_get_or<int64_t>(j, "head_dim", c.hidden / c.n_heads, path) : 0;
  c.bos_id = json_token_id(j, "bos_token_id");
  c.eos_id = json_token_id(j, "eos_token_id");
  c.validate(path);
  return c;
}

ModelConfig read_gguf_config(const formats::GgufFile& g) {
  const std::string arch = g.get_string("general.architecture");
  ModelConfig c;
  auto key = [&](const char* suffix) { return arch + "." + suffix; };
  if (arch == "gpt2") {
    c.arch = Arch::kGpt2;
    c.norm_eps = static_cast<float>(g.get_float(key("attention.layer_norm_epsilon")));
  } else if (arch == "llama") {
    c.arch = Arch::kLlama;
    c.norm_eps = static_cast<float>(g.get_float(key("attention.layer_norm_rms_epsilon")));
    c.rope_theta = g.has_key(key("rope.freq_base")) ? static_cast<float>(g.get_float(key("rope.freq_base"))) : 10000.0f;
    if (g.has_key(key("rope.scaling.type")) && g.get_string(key("rope.scaling.type")) != "none")
      throw Error(g.path() + ": key '" + key("rope.scaling.type") + "' is not supported yet");
  } else {
    throw Error(g.path() + ": general.architecture '" + arch + "' is not supported (gpt2, llama)");
  }
  c.n_layers = g.get_int(key("block_count"));
  c.hidden = g.get_int(key("embedding_length"));
  c.n_heads = g.get_int(key("attention.head_count"));
  c.n_kv_heads = g.has_key(key("attention.head_count_kv")) ? g.get_int(key("attention.head_count_kv")) : c.n_heads;
  c.ffn = g.get_int(key("feed_forward_length"));
  c.max_ctx = g.get_int(key("context_length"));
  c.head_dim = c.n_heads > 0 ? c.hidden / c.n_heads : 0;
  if (g.has_key(key("attention.key_length"))) c.head_dim = g.get_int(key("attention.key_length"));
  // The vocabulary size comes from the embedding tensor itself: not every converter writes <arch>.vocab_size.
  if (!g.has("token_embd.weight")) throw Error(g.path() + ": no tensor 'token_embd.weight'");
  c.vocab = g.info("token_embd.weight").rows();
  c.tied_embeddings = !g.has("output.weight");
  if (g.has_key("tokenizer.ggml.bos_token_id"))
    c.bos_id = static_cast<int32_t>(g.get_int("tokenizer.ggml.bos_token_id"));
  if (g.has_key("tokenizer.ggml.eos_token_id"))
    c.eos_id = static_cast<int32_t>(g.get_int("tokenizer.ggml.eos_token_id"));
  c.validate(g.path());
  return c;
}

}  // namespace tessera::model
