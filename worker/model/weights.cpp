// worker/model/weights.cpp — tensor names and layouts of GPT-2 and Llama checkpoints (HF and GGUF), read as
// whole tensors or as one tensor-parallel rank's slices.
#include "worker/model/weights.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>

#include "common/check.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"

namespace tessera::model {
namespace {

using parallel::Range;
const Range kAll{0, -1};  // the whole dimension

// Appends the block rows × cols of tensor `name` (checked to have `shape`) to `dst` as fp32.
void append(const formats::TensorSource& src, const std::string& name, const std::vector<int64_t>& shape,
            std::vector<float>& dst, Range rows = kAll, Range cols = kAll) {
  const formats::TensorInfo& info = src.expect(name, shape);
  if (rows.end < 0) rows = {0, info.rows()};
  if (cols.end < 0) cols = {0, info.cols()};
  const size_t off = dst.size();
  dst.resize(off + static_cast<size_t>(rows.size() * cols.size()));
  src.read(name, rows.begin, rows.end, cols.begin, cols.end, dst.data() + off);
}

std::vector<float> get(const formats::TensorSource& src, const std::string& name, const std::vector<int64_t>& shape,
                       Range rows = kAll, Range cols = kAll) {
  std::vector<float> v;
  append(src, name, shape, v, rows, cols);
  return v;
}

// HF Conv1D stores [in, out]; the engine wants nn.Linear's [out, in]. Reads the in × out block, transposed.
std::vector<float> get_transposed(const formats::TensorSource& src, const std::string& name, int64_t in, int64_t out,
                                  Range in_range, Range out_range) {
  const std::vector<float> t = get(src, name, {in, out}, in_range, out_range);
  const int64_t ni = in_range.size(), no = out_range.size();
  std::vector<float> r(t.size());
  for (int64_t i = 0; i < ni; ++i)
    for (int64_t o = 0; o < no; ++o) r[o * ni + i] = t[i * no + o];
  return r;
}

Range scaled(Range r, int64_t k, int64_t offset = 0) { return {offset + r.begin * k, offset + r.end * k}; }

// llama.cpp's converter permutes the rows of each Q/K head from rotate-half order (i * half + j) to
// interleaved order (2 * j + i); put them back so one RoPE (HF's) serves both formats.
void unpermute_rope_rows(float* w, int64_t n_heads, int64_t head_dim, int64_t cols) {
  const int64_t half = head_dim / 2;
  std::vector<float> head(static_cast<size_t>(head_dim * cols));
  for (int64_t h = 0; h < n_heads; ++h) {
    float* base = w + h * head_dim * cols;
    std::memcpy(head.data(), base, sizeof(float) * head.size());
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j)
        std::memcpy(base + (i * half + j) * cols, head.data() + (2 * j + i) * cols, sizeof(float) * cols);
  }
}

void load_llama(const formats::TensorSource& src, bool gguf, ModelWeights& w) {
  const ModelConfig& c = w.config;
  const parallel::Shard& s = w.shard;
  const int64_t q_rows = c.n_heads * c.head_dim, kv_rows = c.n_kv_heads * c.head_dim;
  auto name = [&](const char* hf, const char* gg) { return std::string(gguf ? gg : hf); };
  auto layer = [&](int64_t l, const char* hf, const char* gg) {
    return gguf ? "blk." + std::to_string(l) + "." + gg : "model.layers." + std::to_string(l) + "." + hf;
  };
  w.wte = get(src, name("model.embed_tokens.weight", "token_embd.weight"), {c.vocab, c.hidden}, s.vocab);
  w.final_norm_w = get(src, name("model.norm.weight", "output_norm.weight"), {c.hidden});
  const std::string head = name("lm_head.weight", "output.weight");
  if (!c.tied_embeddings || src.has(head)) {
    if (!src.has(head))
      throw Error(src.path() + ": no tensor '" + head + "' and the config says embeddings are not tied");
    w.lm_head = get(src, head, {c.vocab, c.hidden}, s.vocab);
  }
  const Range q = scaled(s.q_heads, c.head_dim), kv = scaled(s.kv_heads, c.head_dim);
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[static_cast<size_t>(l)];
    L.attn_norm_w = get(src, layer(l, "input_layernorm.weight", "attn_norm.weight"), {c.hidden});
    append(src, layer(l, "self_attn.q_proj.weight", "attn_q.weight"), {q_rows, c.hidden}, L.wqkv, q);
    append(src, layer(l, "self_attn.k_proj.weight", "attn_k.weight"), {kv_rows, c.hidden}, L.wqkv, kv);
    append(src, layer(l, "self_attn.v_proj.weight", "attn_v.weight"), {kv_rows, c.hidden}, L.wqkv, kv);
    if (gguf) {  // the permutation is within each head, so it commutes with slicing by heads
      unpermute_rope_rows(L.wqkv.data(), s.q_heads.size(), c.head_dim, c.hidden);
      unpermute_rope_rows(L.wqkv.data() + q.size() * c.hidden, s.kv_heads.size(), c.head_dim, c.hidden);
    }
    L.wo = get(src, layer(l, "self_attn.o_proj.weight", "attn_output.weight"), {c.hidden, q_rows}, kAll, q);
    L.ffn_norm_w = get(src, layer(l, "post_attention_layernorm.weight", "ffn_norm.weight"), {c.hidden});
    append(src, layer(l, "mlp.gate_proj.weight", "ffn_gate.weight"), {c.ffn, c.hidden}, L.w_up, s.ffn);
    append(src, layer(l, "mlp.up_proj.weight", "ffn_up.weight"), {c.ffn, c.hidden}, L.w_up, s.ffn);
    L.w_down = get(src, layer(l, "mlp.down_proj.weight", "ffn_down.weight"), {c.hidden, c.ffn}, kAll, s.ffn);
  }
}

void load_gpt2(const formats::TensorSource& src, bool gguf, ModelWeights& w) {
  const ModelConfig& c = w.config;
  const parallel::Shard& s = w.shard;
  const int64_t H = c.hidden, qkv = 3 * H;
  // HF checkpoints name tensors "transformer.h.0..." (saved from GPT2LMHeadModel) or "h.0..." (the originals).
  const std::string p = (!gguf && src.has("transformer.wte.weight")) ? "transformer." : "";
  auto layer = [&](int64_t l, const char* hf, const char* gg) {
    return gguf ? "blk." + std::to_string(l) + "." + gg : p + "h." + std::to_string(l) + "." + hf;
  };
  w.wte = get(src, gguf ? "token_embd.weight" : p + "wte.weight", {c.vocab, H}, s.vocab);
  w.wpe = get(src, gguf ? "position_embd.weight" : p + "wpe.weight", {c.max_ctx, H});
  w.final_norm_w = get(src, gguf ? "output_norm.weight" : p + "ln_f.weight", {H});
  w.final_norm_b = get(src, gguf ? "output_norm.bias" : p + "ln_f.bias", {H});
  const std::string head = gguf ? "output.weight" : "lm_head.weight";
  if (src.has(head)) w.lm_head = get(src, head, {c.vocab, H}, s.vocab);
  const Range q = scaled(s.q_heads, c.head_dim);  // GPT-2 has no GQA: K and V heads are the query heads
  const Range parts[3] = {q, {H + q.begin, H + q.end}, {2 * H + q.begin, 2 * H + q.end}};
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[static_cast<size_t>(l)];
    L.attn_norm_w = get(src, layer(l, "ln_1.weight", "attn_norm.weight"), {H});
    L.attn_norm_b = get(src, layer(l, "ln_1.bias", "attn_norm.bias"), {H});
    L.ffn_norm_w = get(src, layer(l, "ln_2.weight", "ffn_norm.weight"), {H});
    L.ffn_norm_b = get(src, layer(l, "ln_2.bias", "ffn_norm.bias"), {H});
    for (const Range& r : parts) append(src, layer(l, "attn.c_attn.bias", "attn_qkv.bias"), {qkv}, L.bqkv, kAll, r);
    L.bo = get(src, layer(l, "attn.c_proj.bias", "attn_output.bias"), {H});
    L.b_up = get(src, layer(l, "mlp.c_fc.bias", "ffn_up.bias"), {c.ffn}, kAll, s.ffn);
    L.b_down = get(src, layer(l, "mlp.c_proj.bias", "ffn_down.bias"), {H});
    if (gguf) {  // the GGUF converter already stores nn.Linear's [out, in]
      for (const Range& r : parts) append(src, layer(l, "", "attn_qkv.weight"), {qkv, H}, L.wqkv, r);
      L.wo = get(src, layer(l, "", "attn_output.weight"), {H, H}, kAll, q);
      L.w_up = get(src, layer(l, "", "ffn_up.weight"), {c.ffn, H}, s.ffn);
      L.w_down = get(src, layer(l, "", "ffn_down.weight"), {H, c.ffn}, kAll, s.ffn);
    } else {
      for (const Range& r : parts) {
        const auto t = get_transposed(src, layer(l, "attn.c_attn.weight", ""), H, qkv, {0, H}, r);
        L.wqkv.insert(L.wqkv.end(), t.begin(), t.end());
      }
      L.wo = get_transposed(src, layer(l, "attn.c_proj.weight", ""), H, H, q, {0, H});
      L.w_up = get_transposed(src, layer(l, "mlp.c_fc.weight", ""), H, c.ffn, {0, H}, s.ffn);
      L.w_down = get_transposed(src, layer(l, "mlp.c_proj.weight", ""), c.ffn, H, s.ffn, {0, H});
    }
  }
}

}  // namespace

size_t ModelWeights::n_bytes() const {
  size_t n = wte.size() + wpe.size() + final_norm_w.size() + final_norm_b.size() + lm_head.size();
  for (const auto& L : layers)
    n += L.attn_norm_w.size() + L.attn_norm_b.size() + L.wqkv.size() + L.bqkv.size() + L.wo.size() + L.bo.size() +
         L.ffn_norm_w.size() + L.ffn_norm_b.size() + L.w_up.size() + L.b_up.size() + L.w_down.size() + L.b_down.size();
  return n * sizeof(float);
}

bool is_gguf_path(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(path + ": no such file or directory");
  if (S_ISDIR(st.st_mode)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return true;
  throw Error(path + ": not a GGUF file (bad magic) and not a Hugging Face model directory");
}

ModelConfig read_model_config(const std::string& path) {
  if (is_gguf_path(path)) return read_gguf_config(*formats::GgufFile::open(path));
  return read_hf_config(path);
}

parallel::ShardShape shard_shape(const ModelConfig& c) { return {c.n_heads, c.n_kv_heads, c.ffn, c.vocab}; }

ModelWeights load_weights(const std::string& path, int tp_rank, int tp_size) {
  ModelWeights w;
  std::unique_ptr<formats::TensorSource> src;
  const bool gguf = is_gguf_path(path);
  if (gguf) {
    auto g = formats::GgufFile::open(path);
    w.config = read_gguf_config(*g);
    src = std::move(g);
  } else {
    w.config = read_hf_config(path);
    src = formats::open_safetensors_dir(path);
  }
  try {
    w.shard = parallel::make_shard(shard_shape(w.config), tp_rank, tp_size);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  if (w.config.arch == Arch::kLlama) {
    load_llama(*src, gguf, w);
  } else {
    load_gpt2(*src, gguf, w);
  }
  return w;
}

}  // namespace tessera::model
