// worker/model/weights.cpp — tensor names and layouts of GPT-2 and Llama checkpoints (HF and GGUF), read as
// whole tensors or as one tensor-parallel rank's slices.
#include "worker/model/weights.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <functional>

#include "common/check.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "kernels/cpu/quant.h"

namespace tessera::model {
namespace {

using parallel::Range;
const Range kAll{0, -1};  // the whole dimension

// The engine's type for a file's storage type, matched by name (every type the readers know is one the CPU kernels
// take).
ops::DType storage_type(formats::DType t, const std::string& path, const std::string& tensor) {
  const std::string name = formats::dtype_name(t);
  for (ops::DType o : {ops::DType::F32, ops::DType::F16, ops::DType::BF16, ops::DType::Q8_0, ops::DType::Q4_0,
                       ops::DType::Q4_1, ops::DType::Q4_K, ops::DType::Q6_K}) {
    std::string n = ops::dtype_name(o);
    for (char& ch : n) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (n == name) return o;
  }
  throw Error(path + ": tensor '" + tensor + "' has type " + name + ", which the engine cannot compute with");
}

HostTensor owned(ops::DType t, int64_t rows, int64_t cols, std::vector<uint8_t> bytes) {
  HostTensor h;
  h.dtype = t;
  h.rows = rows;
  h.cols = cols;
  auto own = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  h.data = own->data();
  h.own = std::move(own);
  return h;
}

// One part of a stacked matrix: the block rows × cols of tensor `name` (checked to have `shape`), viewed as
// [rows(), cols()].
struct Part {
  std::string name;
  std::vector<int64_t> shape;
  Range rows = kAll, cols = kAll;
};

class Loader {
 public:
  Loader(const formats::TensorSource& src, bool keep_types) : src_(src), keep_(keep_types) {}

  // A norm weight or a bias, fp32 [1, n]: the columns `cols` of each part, concatenated.
  HostTensor vec(std::vector<Part> parts) {
    std::vector<float> v;
    for (Part& p : parts) {
      const formats::TensorInfo& info = resolve(p);
      const size_t off = v.size();
      v.resize(off + static_cast<size_t>(p.rows.size() * p.cols.size()));
      src_.read(info.name, p.rows.begin, p.rows.end, p.cols.begin, p.cols.end, v.data() + off);
    }
    const auto n = static_cast<int64_t>(v.size());
    return HostTensor::f32(std::move(v), 1, n);
  }
  HostTensor vec(const std::string& name, const std::vector<int64_t>& shape, Range cols = kAll) {
    return vec({Part{name, shape, kAll, cols}});
  }

  // A matrix of the parts' rows stacked (every part with the same columns). `fix` may edit the rows of an assembled
  // matrix (bytes, row_bytes) before it is frozen; a matrix with a fix is never a view.
  HostTensor matrix(std::vector<Part> parts, const std::function<void(uint8_t*, size_t)>& fix = nullptr) {
    int64_t rows = 0, cols = -1;
    bool typed = keep_;
    const formats::DType ft = resolve(parts[0]).dtype;
    const ops::DType t = storage_type(ft, src_.path(), parts[0].name);
    const int64_t bs = ops::block_size(t);
    for (Part& p : parts) {
      const formats::TensorInfo& info = resolve(p);
      rows += p.rows.size();
      TESSERA_CHECK(cols < 0 || cols == p.cols.size());
      cols = p.cols.size();
      typed = typed && info.dtype == ft && p.cols.begin % bs == 0 && p.cols.size() % bs == 0;
    }
    if (typed && parts.size() == 1 && !fix && parts[0].cols.size() == src_.info(parts[0].name).cols()) {
      // The rank's rows of one tensor, in the file's layout: a view of the mapping.
      const Part& p = parts[0];
      const auto* base = static_cast<const uint8_t*>(src_.data(p.name)) + ops::dtype_nbytes(t, p.rows.begin * cols);
      if (reinterpret_cast<uintptr_t>(base) % static_cast<uintptr_t>(bs == 1 ? ops::block_bytes(t) : 1) == 0) {
        HostTensor h;
        h.dtype = t;
        h.rows = rows;
        h.cols = cols;
        h.data = base;
        return h;
      }
    }
    const ops::DType out_t = typed ? t : ops::DType::F32;
    const size_t row_bytes = ops::dtype_nbytes(out_t, cols);
    std::vector<uint8_t> bytes(row_bytes * static_cast<size_t>(rows));
    uint8_t* dst = bytes.data();
    for (const Part& p : parts) {
      if (typed) {
        const auto* base = static_cast<const uint8_t*>(src_.data(p.name));
        const size_t src_row = ops::dtype_nbytes(t, src_.info(p.name).cols()),
                     skip = ops::dtype_nbytes(t, p.cols.begin);
        for (int64_t r = p.rows.begin; r < p.rows.end; ++r, dst += row_bytes)
          std::memcpy(dst, base + static_cast<size_t>(r) * src_row + skip, row_bytes);
      } else {
        src_.read(p.name, p.rows.begin, p.rows.end, p.cols.begin, p.cols.end, reinterpret_cast<float*>(dst));
        dst += row_bytes * static_cast<size_t>(p.rows.size());
      }
    }
    if (fix) fix(bytes.data(), row_bytes);
    for (const Part& p : parts) src_.release(p.name);  // copied: the file's pages need not stay resident
    return owned(out_t, rows, cols, std::move(bytes));
  }
  HostTensor matrix(const std::string& name, const std::vector<int64_t>& shape, Range rows = kAll, Range cols = kAll) {
    return matrix({Part{name, shape, rows, cols}});
  }

  // HF Conv1D stores [in, out]; the engine wants nn.Linear's [out, in]: the in × out block, transposed (fp32), the
  // parts' output columns stacked as rows.
  HostTensor transposed(const std::string& name, int64_t in, int64_t out, Range in_range,
                        const std::vector<Range>& out_ranges) {
    const formats::TensorInfo& info = src_.expect(name, {in, out});
    const int64_t ni = in_range.size();
    int64_t total = 0;
    for (const Range& r : out_ranges) total += r.size();
    bool adjacent = true;  // the output ranges are one run of columns
    for (size_t i = 1; i < out_ranges.size(); ++i) adjacent = adjacent && out_ranges[i].begin == out_ranges[i - 1].end;
    const bool f32_mapped =
        info.dtype == formats::DType::F32 && reinterpret_cast<uintptr_t>(src_.data(name)) % alignof(float) == 0;
    // Read in place (the CPU's linear takes [in, out] as it is) when the rank's output columns are whole rows of
    // the file: a narrower column slice would leave other ranks' columns resident too (the kernel maps 64 KiB
    // around every faulting page), so a TP rank copies its columns instead.
    const bool whole_rows = adjacent && out_ranges.front().begin == 0 && out_ranges.back().end == out;
    if (keep_ && f32_mapped && whole_rows) {
      HostTensor h;
      h.dtype = ops::DType::F32;
      h.rows = total;
      h.cols = ni;
      h.data = static_cast<const float*>(src_.data(name)) + in_range.begin * out + out_ranges[0].begin;
      h.transposed = true;
      h.ld = out;
      return h;
    }
    std::vector<uint8_t> bytes(sizeof(float) * static_cast<size_t>(ni * total));
    auto* o = reinterpret_cast<float*>(bytes.data());
    int64_t row0 = 0;
    if (info.dtype == formats::DType::F32 && reinterpret_cast<uintptr_t>(src_.data(name)) % alignof(float) == 0) {
      // fp32 in the mapping: a blocked transpose straight from the file's pages, tiles of 64 × 64 over the threads.
      const auto* t = static_cast<const float*>(src_.data(name));
      constexpr int64_t kTile = 64;
      for (const Range& r : out_ranges) {
        const int64_t no = r.size();
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t c0 = 0; c0 < no; c0 += kTile)
          for (int64_t i0 = 0; i0 < ni; i0 += kTile)
            for (int64_t c = c0; c < std::min(no, c0 + kTile); ++c)
              for (int64_t i = i0; i < std::min(ni, i0 + kTile); ++i)
                o[(row0 + c) * ni + i] = t[(in_range.begin + i) * out + r.begin + c];
        row0 += no;
      }
    } else {
      std::vector<float> t;
      for (const Range& r : out_ranges) {
        const int64_t no = r.size();
        t.resize(static_cast<size_t>(ni * no));
        src_.read(name, in_range.begin, in_range.end, r.begin, r.end, t.data());
        for (int64_t i = 0; i < ni; ++i)
          for (int64_t c = 0; c < no; ++c) o[(row0 + c) * ni + i] = t[static_cast<size_t>(i * no + c)];
        row0 += no;
      }
    }
    src_.release(name);
    return owned(ops::DType::F32, total, ni, std::move(bytes));
  }

 private:
  const formats::TensorInfo& resolve(Part& p) {
    const formats::TensorInfo& info = src_.expect(p.name, p.shape);
    if (p.rows.end < 0) p.rows = {0, info.rows()};
    if (p.cols.end < 0) p.cols = {0, info.cols()};
    return info;
  }

  const formats::TensorSource& src_;
  bool keep_;
};

Range scaled(Range r, int64_t k, int64_t offset = 0) { return {offset + r.begin * k, offset + r.end * k}; }

// llama.cpp's converter permutes the rows of each Q/K head from rotate-half order (i * half + j) to
// interleaved order (2 * j + i); put them back so one RoPE (HF's) serves both formats. Rows are moved whole, in
// whatever type they are stored.
void unpermute_rope_rows(uint8_t* w, int64_t n_heads, int64_t head_dim, size_t row_bytes) {
  const int64_t half = head_dim / 2;
  std::vector<uint8_t> head(static_cast<size_t>(head_dim) * row_bytes);
  for (int64_t h = 0; h < n_heads; ++h) {
    uint8_t* base = w + static_cast<size_t>(h * head_dim) * row_bytes;
    std::memcpy(head.data(), base, head.size());
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j)
        std::memcpy(base + static_cast<size_t>(i * half + j) * row_bytes,
                    head.data() + static_cast<size_t>(2 * j + i) * row_bytes, row_bytes);
  }
}

void load_llama(Loader& ld, const formats::TensorSource& src, bool gguf, ModelWeights& w) {
  const ModelConfig& c = w.config;
  const parallel::Shard& s = w.shard;
  const int64_t q_rows = c.n_heads * c.head_dim, kv_rows = c.n_kv_heads * c.head_dim;
  auto name = [&](const char* hf, const char* gg) { return std::string(gguf ? gg : hf); };
  auto layer = [&](int64_t l, const char* hf, const char* gg) {
    return gguf ? "blk." + std::to_string(l) + "." + gg : "model.layers." + std::to_string(l) + "." + hf;
  };
  w.wte = ld.matrix(name("model.embed_tokens.weight", "token_embd.weight"), {c.vocab, c.hidden}, s.vocab);
  w.final_norm_w = ld.vec(name("model.norm.weight", "output_norm.weight"), {c.hidden});
  const std::string head = name("lm_head.weight", "output.weight");
  if (!c.tied_embeddings || src.has(head)) {
    if (!src.has(head))
      throw Error(src.path() + ": no tensor '" + head + "' and the config says embeddings are not tied");
    w.lm_head = ld.matrix(head, {c.vocab, c.hidden}, s.vocab);
  }
  const Range q = scaled(s.q_heads, c.head_dim), kv = scaled(s.kv_heads, c.head_dim);
  const int64_t hq = s.q_heads.size(), hkv = s.kv_heads.size();
  // GGUF: the permutation is within each head, so it commutes with slicing by heads.
  auto unpermute = [&](uint8_t* b, size_t row_bytes) {
    unpermute_rope_rows(b, hq, c.head_dim, row_bytes);
    unpermute_rope_rows(b + static_cast<size_t>(q.size()) * row_bytes, hkv, c.head_dim, row_bytes);
  };
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[static_cast<size_t>(l)];
    L.attn_norm_w = ld.vec(layer(l, "input_layernorm.weight", "attn_norm.weight"), {c.hidden});
    L.wqkv = ld.matrix({Part{layer(l, "self_attn.q_proj.weight", "attn_q.weight"), {q_rows, c.hidden}, q},
                        Part{layer(l, "self_attn.k_proj.weight", "attn_k.weight"), {kv_rows, c.hidden}, kv},
                        Part{layer(l, "self_attn.v_proj.weight", "attn_v.weight"), {kv_rows, c.hidden}, kv}},
                       gguf ? std::function<void(uint8_t*, size_t)>(unpermute) : nullptr);
    L.wo = ld.matrix(layer(l, "self_attn.o_proj.weight", "attn_output.weight"), {c.hidden, q_rows}, kAll, q);
    L.ffn_norm_w = ld.vec(layer(l, "post_attention_layernorm.weight", "ffn_norm.weight"), {c.hidden});
    L.w_up = ld.matrix({Part{layer(l, "mlp.gate_proj.weight", "ffn_gate.weight"), {c.ffn, c.hidden}, s.ffn},
                        Part{layer(l, "mlp.up_proj.weight", "ffn_up.weight"), {c.ffn, c.hidden}, s.ffn}});
    L.w_down = ld.matrix(layer(l, "mlp.down_proj.weight", "ffn_down.weight"), {c.hidden, c.ffn}, kAll, s.ffn);
  }
}

void load_gpt2(Loader& ld, const formats::TensorSource& src, bool gguf, ModelWeights& w) {
  const ModelConfig& c = w.config;
  const parallel::Shard& s = w.shard;
  const int64_t H = c.hidden, qkv = 3 * H;
  // HF checkpoints name tensors "transformer.h.0..." (saved from GPT2LMHeadModel) or "h.0..." (the originals).
  const std::string p = (!gguf && src.has("transformer.wte.weight")) ? "transformer." : "";
  auto layer = [&](int64_t l, const char* hf, const char* gg) {
    return gguf ? "blk." + std::to_string(l) + "." + gg : p + "h." + std::to_string(l) + "." + hf;
  };
  w.wte = ld.matrix(gguf ? "token_embd.weight" : p + "wte.weight", {c.vocab, H}, s.vocab);
  {
    const std::string wpe = gguf ? "position_embd.weight" : p + "wpe.weight";  // fp32: the embedding adds it
    const auto v = ld.vec(wpe, {c.max_ctx, H}, kAll);
    w.wpe = v;  // read as one row of max_ctx · H values by vec(): give it its shape
    w.wpe.rows = c.max_ctx;
    w.wpe.cols = H;
  }
  w.final_norm_w = ld.vec(gguf ? "output_norm.weight" : p + "ln_f.weight", {H});
  w.final_norm_b = ld.vec(gguf ? "output_norm.bias" : p + "ln_f.bias", {H});
  const std::string head = gguf ? "output.weight" : "lm_head.weight";
  if (src.has(head)) w.lm_head = ld.matrix(head, {c.vocab, H}, s.vocab);
  const Range q = scaled(s.q_heads, c.head_dim);  // GPT-2 has no GQA: K and V heads are the query heads
  const std::vector<Range> parts = {q, {H + q.begin, H + q.end}, {2 * H + q.begin, 2 * H + q.end}};
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[static_cast<size_t>(l)];
    L.attn_norm_w = ld.vec(layer(l, "ln_1.weight", "attn_norm.weight"), {H});
    L.attn_norm_b = ld.vec(layer(l, "ln_1.bias", "attn_norm.bias"), {H});
    L.ffn_norm_w = ld.vec(layer(l, "ln_2.weight", "ffn_norm.weight"), {H});
    L.ffn_norm_b = ld.vec(layer(l, "ln_2.bias", "ffn_norm.bias"), {H});
    const std::string bqkv = layer(l, "attn.c_attn.bias", "attn_qkv.bias");
    L.bqkv = ld.vec(
        {Part{bqkv, {qkv}, kAll, parts[0]}, Part{bqkv, {qkv}, kAll, parts[1]}, Part{bqkv, {qkv}, kAll, parts[2]}});
    L.bo = ld.vec(layer(l, "attn.c_proj.bias", "attn_output.bias"), {H});
    L.b_up = ld.vec(layer(l, "mlp.c_fc.bias", "ffn_up.bias"), {c.ffn}, s.ffn);
    L.b_down = ld.vec(layer(l, "mlp.c_proj.bias", "ffn_down.bias"), {H});
    if (gguf) {  // the GGUF converter already stores nn.Linear's [out, in]
      const std::string wqkv = layer(l, "", "attn_qkv.weight");
      L.wqkv =
          ld.matrix({Part{wqkv, {qkv, H}, parts[0]}, Part{wqkv, {qkv, H}, parts[1]}, Part{wqkv, {qkv, H}, parts[2]}});
      L.wo = ld.matrix(layer(l, "", "attn_output.weight"), {H, H}, kAll, q);
      L.w_up = ld.matrix(layer(l, "", "ffn_up.weight"), {c.ffn, H}, s.ffn);
      L.w_down = ld.matrix(layer(l, "", "ffn_down.weight"), {H, c.ffn}, kAll, s.ffn);
    } else {
      L.wqkv = ld.transposed(layer(l, "attn.c_attn.weight", ""), H, qkv, {0, H}, parts);
      L.wo = ld.transposed(layer(l, "attn.c_proj.weight", ""), H, H, q, {{0, H}});
      L.w_up = ld.transposed(layer(l, "mlp.c_fc.weight", ""), H, c.ffn, {0, H}, {s.ffn});
      L.w_down = ld.transposed(layer(l, "mlp.c_proj.weight", ""), c.ffn, H, s.ffn, {{0, H}});
    }
  }
}

template <typename F>
void for_each_tensor(const ModelWeights& w, F&& f) {
  for (const HostTensor* t : {&w.wte, &w.wpe, &w.final_norm_w, &w.final_norm_b, &w.lm_head}) f(*t);
  for (const auto& L : w.layers)
    for (const HostTensor* t : {&L.attn_norm_w, &L.attn_norm_b, &L.wqkv, &L.bqkv, &L.wo, &L.bo, &L.ffn_norm_w,
                                &L.ffn_norm_b, &L.w_up, &L.b_up, &L.w_down, &L.b_down})
      f(*t);
}

}  // namespace

HostTensor HostTensor::f32(std::vector<float> values, int64_t rows, int64_t cols) {
  TESSERA_CHECK(static_cast<int64_t>(values.size()) == rows * cols);
  if (values.empty()) return HostTensor{};
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return owned(ops::DType::F32, rows, cols, std::move(bytes));
}

const float* HostTensor::f32_data() const {
  TESSERA_CHECK_MSG(dtype == ops::DType::F32,
                    std::string("an fp32 weight was expected, not ") + ops::dtype_name(dtype));
  return static_cast<const float*>(data);
}

std::vector<float> HostTensor::to_f32() const {
  std::vector<float> v(static_cast<size_t>(numel()));
  if (empty()) return v;
  if (transposed) {
    const auto* t = static_cast<const float*>(data);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(r * cols + c)] = t[c * ld + r];
  } else if (dtype == ops::DType::F32) {
    std::memcpy(v.data(), data, v.size() * sizeof(float));
  } else {
    ops::dequantize_rows(tensor(), 0, rows, v.data());
  }
  return v;
}

size_t ModelWeights::n_bytes() const {
  size_t n = 0;
  for_each_tensor(*this, [&](const HostTensor& t) { n += t.nbytes(); });
  return n;
}

size_t ModelWeights::n_mapped_bytes() const {
  size_t n = 0;
  for_each_tensor(*this, [&](const HostTensor& t) { n += t.is_view() ? t.nbytes() : 0; });
  return n;
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

ModelWeights load_weights(const std::string& path, int tp_rank, int tp_size, LoadOptions options) {
  ModelWeights w;
  std::shared_ptr<formats::TensorSource> src;
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
  Loader ld(*src, options.keep_types);
  if (w.config.arch == Arch::kLlama) {
    load_llama(ld, *src, gguf, w);
  } else {
    load_gpt2(ld, *src, gguf, w);
  }
  w.source = std::move(src);
  return w;
}

}  // namespace tessera::model
