// worker/model/forward.cpp — see forward.h: the layer loop over the residual stream, prefill and decode, the
// logits, each exactly once for every backend.
#include "worker/model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/check.h"
#include "parallel/transport.h"
#include "worker/model/weights.h"

namespace tessera::worker {

using model::Arch;
using ops::Tensor;

PrefillGroup PrefillGroup::make(const std::vector<std::vector<int32_t>>& prompts, const std::vector<int32_t>& slots) {
  TESSERA_CHECK(prompts.size() == slots.size() && !prompts.empty());
  PrefillGroup g;
  for (const auto& p : prompts) g.n_cols = std::max<int64_t>(g.n_cols, static_cast<int64_t>(p.size()));
  for (const auto& p : prompts) parallel::append_left_padded(g.tokens, g.pad, static_cast<int32_t>(g.n_cols), p);
  g.tables = BlockTables::slots(slots);
  return g;
}

ModelTensors place_weights(const model::ModelWeights& w, const PlaceWeight& place) {
  const auto& c = w.config;
  const auto& sh = w.shard;
  const int64_t heads = sh.q_heads.size(), kv_heads = sh.kv_heads.size(), ffn = sh.ffn.size();
  const int64_t qkv = (heads + 2 * kv_heads) * c.head_dim, vocab = sh.vocab.size();
  const bool llama = c.arch == Arch::kLlama;
  auto put = [&](const model::HostTensor& h, int64_t rows, int64_t cols, int64_t zero_rows = 0) -> Tensor {
    if (h.empty()) return Tensor{};
    TESSERA_CHECK_MSG(h.rows == rows && h.cols == cols, "weight of [" + std::to_string(h.rows) + ", " +
                                                            std::to_string(h.cols) + "], expected [" +
                                                            std::to_string(rows) + ", " + std::to_string(cols) + "]");
    return place(h, zero_rows);
  };
  auto vec = [&](const model::HostTensor& h) { return put(h, 1, h.numel()); };
  ModelTensors t;
  t.wte = put(w.wte, vocab, c.hidden, sh.tp_size > 1 ? 1 : 0);
  t.wpe = put(w.wpe, w.wpe.rows, c.hidden);
  t.final_norm_w = vec(w.final_norm_w);
  t.final_norm_b = vec(w.final_norm_b);
  t.out_matrix = w.lm_head.empty() ? t.wte : put(w.lm_head, vocab, c.hidden);
  for (const auto& L : w.layers) {
    LayerTensors l;
    l.attn_norm_w = vec(L.attn_norm_w);
    l.attn_norm_b = vec(L.attn_norm_b);
    l.wqkv = put(L.wqkv, qkv, c.hidden);
    l.bqkv = vec(L.bqkv);
    l.wo = put(L.wo, c.hidden, heads * c.head_dim);
    l.bo = vec(L.bo);
    l.ffn_norm_w = vec(L.ffn_norm_w);
    l.ffn_norm_b = vec(L.ffn_norm_b);
    l.w_up = put(L.w_up, (llama ? 2 : 1) * ffn, c.hidden);
    l.b_up = vec(L.b_up);
    l.w_down = put(L.w_down, c.hidden, ffn);
    l.b_down = vec(L.b_down);
    t.layers.push_back(l);
  }
  return t;
}

ForwardPass::ForwardPass(const model::ModelConfig& config, const parallel::Shard& shard, ModelTensors weights,
                         ops::Backend& backend, parallel::Communicator& tp)
    : c_(config), shard_(shard), w_(std::move(weights)), be_(backend), tp_(tp) {
  TESSERA_CHECK(tp_.size() == shard_.tp_size && tp_.rank() == shard_.tp_rank);
  TESSERA_CHECK(static_cast<int64_t>(w_.layers.size()) == c_.n_layers && c_.n_layers > 0);
  norm_ = c_.arch == Arch::kLlama ? ops::NormKind::kRms : ops::NormKind::kLayer;
  n_heads_ = shard_.q_heads.size();
  n_kv_heads_ = shard_.kv_heads.size();
  n_ffn_ = shard_.ffn.size();
  vocab_local_ = shard_.vocab.size();
  qkv_cols_ = (n_heads_ + 2 * n_kv_heads_) * c_.head_dim;
  attn_shape_ =
      ops::AttentionShape{n_heads_, n_kv_heads_, c_.head_dim, 1.0f / std::sqrt(static_cast<float>(c_.head_dim))};
}

// The call's buffers in one scratch request: the fp32 residual stream, the activations in act_dtype, the logits
// (fp32), the index arrays and the attention workspace.
void ForwardPass::prepare(int64_t n, int64_t B, size_t workspace_bytes, size_t n_ints) {
  const ops::DType t = be_.act_dtype(), f32 = ops::DType::F32;
  const size_t e = ops::dtype_size(t);
  const bool llama = c_.arch == Arch::kLlama;
  const int64_t q_cols = n_heads_ * c_.head_dim, ffn_cols = (llama ? 2 : 1) * n_ffn_;
  const int64_t block = tp_.size() > 1 ? (c_.vocab + tp_.size() - 1) / tp_.size() : c_.vocab;
  const size_t sizes[] = {static_cast<size_t>(n * c_.hidden) * sizeof(float),  // x
                          static_cast<size_t>(n * c_.hidden) * e,              // h
                          static_cast<size_t>(n * qkv_cols_) * e,              // qkv
                          static_cast<size_t>(n * q_cols) * e,                 // attn
                          static_cast<size_t>(n * c_.hidden) * e,              // proj
                          static_cast<size_t>(n * ffn_cols) * e,               // ffn (gate|up)
                          static_cast<size_t>(n * n_ffn_) * e,                 // ffn_act
                          static_cast<size_t>(B * c_.hidden) * e,              // rows
                          static_cast<size_t>(B * block) * sizeof(float),      // logits_local
                          static_cast<size_t>(tp_.size() > 1 ? tp_.size() * B * block : 0) * sizeof(float),
                          n_ints * sizeof(int32_t),  // ints
                          workspace_bytes};
  void* p[std::size(sizes)];
  be_.scratch(sizes, p);
  x_ = Tensor::dense(p[0], f32, n, c_.hidden);
  h_ = Tensor::dense(p[1], t, n, c_.hidden);
  qkv_ = Tensor::dense(p[2], t, n, qkv_cols_);
  attn_ = Tensor::dense(p[3], t, n, q_cols);
  proj_ = Tensor::dense(p[4], t, n, c_.hidden);
  ffn_ = Tensor::dense(p[5], t, n, ffn_cols);
  ffn_act_ = Tensor::dense(p[6], t, n, n_ffn_);
  rows_ = Tensor::dense(p[7], t, B, c_.hidden);
  step_ = ForwardStep{};
  step_.n = n;
  step_.B = B;
  step_.block = block;
  step_.logits_local = Tensor{p[8], f32, B, vocab_local_, block};
  step_.logits_all = tp_.size() > 1 ? static_cast<float*>(p[9]) : nullptr;
  ints_ = static_cast<int32_t*>(p[10]);
  workspace_ = workspace_bytes > 0 ? p[11] : nullptr;
  workspace_bytes_ = workspace_bytes;
}

void ForwardPass::check_kv(std::span<const ops::KvLayer> kv) const {
  TESSERA_CHECK(static_cast<int64_t>(kv.size()) == c_.n_layers);
  TESSERA_CHECK_MSG(kv[0].n_blocks > 0 && kv[0].block_size > 0, "the KV cache is not configured");
  TESSERA_CHECK(kv[0].n_kv_heads == n_kv_heads_ && kv[0].head_dim == c_.head_dim &&
                be_.kv_dtype_supported(kv[0].dtype));
}

int32_t ForwardPass::local_id(int32_t token) const {
  if (tp_.size() == 1) return token;
  const auto [v0, v1] = shard_.vocab;
  return token >= v0 && token < v1 ? static_cast<int32_t>(token - v0) : static_cast<int32_t>(vocab_local_);
}

// Under TP the ids are local to the shard (local_id); a token another rank owns gets vocab_local (outside the
// table: a zero row), and only rank 0 adds the positions, so that the fp32 all-reduce sums one embedding row and one
// position row.
void ForwardPass::embed() {
  const int64_t n = step_.n;
  const Tensor wpe = tp_.rank() == 0 ? w_.wpe : Tensor{};
  be_.embedding(ints_, ints_ + n, w_.wte, wpe, x_);
  all_reduce(x_);
}

void ForwardPass::all_reduce(const Tensor& t) {
  if (tp_.size() == 1) return;
  const parallel::ElemType e = t.dtype == ops::DType::F32   ? parallel::ElemType::kF32
                               : t.dtype == ops::DType::F16 ? parallel::ElemType::kF16
                                                            : parallel::ElemType::kBF16;
  TESSERA_CHECK(t.contiguous());
  tp_.all_reduce_sum(t.data, t.numel(), e);
}

template <typename Attend>
void ForwardPass::layers(std::span<const ops::KvLayer> kv, const int32_t* kv_blocks, const int32_t* kv_rows,
                         Attend&& attend) {
  const int64_t q_cols = n_heads_ * c_.head_dim, kv_cols = n_kv_heads_ * c_.head_dim;
  const int32_t* pos = ints_ + step_.n;
  const bool rank0 = tp_.rank() == 0;
  const bool llama = c_.arch == Arch::kLlama;
  const Tensor q = qkv_.cols_from(0, q_cols), k = qkv_.cols_from(q_cols, kv_cols),
               v = qkv_.cols_from(q_cols + kv_cols, kv_cols);
  be_.norm(norm_, x_, w_.layers[0].attn_norm_w, w_.layers[0].attn_norm_b, h_, c_.norm_eps);
  for (int64_t l = 0; l < c_.n_layers; ++l) {
    const LayerTensors& L = w_.layers[static_cast<size_t>(l)];
    be_.linear(h_, L.wqkv, L.bqkv, qkv_);  // [n, hidden] → [n, (heads + 2 kv_heads) · head_dim]
    if (llama) {
      be_.rope(q, pos, c_.head_dim, c_.rope_theta);
      be_.rope(k, pos, c_.head_dim, c_.rope_theta);
    }
    be_.kv_write(k, v, kv_blocks, kv_rows, kv[static_cast<size_t>(l)]);
    attend(q, k, v, kv[static_cast<size_t>(l)]);  // → attn_ [n, heads · head_dim]
    // A partial sum over this rank's heads; rank 0 adds the replicated bias, so that the all-reduce adds it once.
    be_.linear(attn_, L.wo, rank0 ? L.bo : Tensor{}, proj_);
    all_reduce(proj_);
    be_.add_norm(norm_, x_, proj_, L.ffn_norm_w, L.ffn_norm_b, h_, c_.norm_eps);
    if (llama) {
      be_.linear(h_, L.w_up, Tensor{}, ffn_);
      be_.silu_mul(ffn_, ffn_act_);
    } else {
      be_.linear(h_, L.w_up, Tensor{}, ffn_act_);
      be_.add_bias_gelu(ffn_act_, L.b_up);
    }
    be_.linear(ffn_act_, L.w_down, rank0 ? L.b_down : Tensor{}, proj_);
    all_reduce(proj_);
    // The next layer's fused residual add + norm; after the last layer the final norm (over every row: the rows
    // the logits need are taken from h afterwards).
    const bool last = l + 1 == c_.n_layers;
    const Tensor& g = last ? w_.final_norm_w : w_.layers[static_cast<size_t>(l + 1)].attn_norm_w;
    const Tensor& b = last ? w_.final_norm_b : w_.layers[static_cast<size_t>(l + 1)].attn_norm_b;
    be_.add_norm(norm_, x_, proj_, g, b, h_, c_.norm_eps);
  }
}

// rows_normed [B, hidden] → this rank's logits block [B, vocab shard] (fp32, never rounded to the storage type).
void ForwardPass::lm_head(const Tensor& rows_normed) {
  be_.linear(rows_normed, w_.out_matrix, Tensor{}, step_.logits_local);
}

void ForwardPass::locate(const int32_t* t, int64_t width, int64_t p, const ops::KvLayer& cache, int32_t* block,
                         int32_t* row) const {
  const int64_t j = p / cache.block_size;
  TESSERA_CHECK_MSG(j < width, "position " + std::to_string(p) + " is past its block table of " +
                                   std::to_string(width) + " blocks of " + std::to_string(cache.block_size));
  TESSERA_CHECK_MSG(t[j] >= 0 && t[j] < cache.n_blocks,
                    "KV block " + std::to_string(t[j]) + " outside the cache of " + std::to_string(cache.n_blocks));
  *block = t[j];
  *row = static_cast<int32_t>(p % cache.block_size);
}

const ForwardStep& ForwardPass::prefill(const PrefillGroup& g, std::span<const ops::KvLayer> kv) {
  const int64_t B = g.n_rows(), L = g.n_cols, n = B * L, W = g.tables.width;
  TESSERA_CHECK(B > 0 && static_cast<int64_t>(g.tokens.size()) == n && W > 0 &&
                static_cast<int64_t>(g.tables.blocks.size()) == B * W &&
                (g.cached.empty() || static_cast<int64_t>(g.cached.size()) == B));
  check_kv(kv);
  TESSERA_CHECK(L <= c_.max_ctx);
  const bool paged = be_.paged_prefill();
  prepare(n, B, 0, static_cast<size_t>(4 * n + 2 * B + B * W));
  // ints: ids [n] (local to the shard), positions [n], KV blocks [n] (-1 on pad columns), KV rows [n], pad [B],
  // cached [B], tables [B, W]
  host_ints_.assign(static_cast<size_t>(4 * n + 2 * B + B * W), 0);
  int32_t *ids = host_ints_.data(), *pos = ids + n, *kv_blocks = pos + n, *kv_rows = kv_blocks + n, *pad = kv_rows + n,
          *cached = pad + B, *tables = cached + B;
  for (int64_t i = 0; i < n; ++i) ids[i] = local_id(g.tokens[static_cast<size_t>(i)]);
  std::copy(g.tables.blocks.begin(), g.tables.blocks.end(), tables);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t p = g.pad[static_cast<size_t>(b)], c = g.cached.empty() ? 0 : g.cached[static_cast<size_t>(b)];
    TESSERA_CHECK(p >= 0 && p < L && c >= 0 && c + L - p <= c_.max_ctx);
    TESSERA_CHECK_MSG(c == 0 || paged,
                      std::string("the ") + be_.name() + " backend's prefill cannot start after a cached prefix");
    for (int64_t col = 0; col < L; ++col) {
      const bool is_pad = col < p;
      pos[b * L + col] = is_pad ? 0 : static_cast<int32_t>(c + col - p);
      kv_blocks[b * L + col] = -1;
      if (!is_pad) locate(tables + b * W, W, pos[b * L + col], kv[0], kv_blocks + b * L + col, kv_rows + b * L + col);
    }
    pad[b] = p;
    cached[b] = c;
  }
  be_.upload(ints_, host_ints_.data(), host_ints_.size() * sizeof(int32_t));
  embed();
  const int32_t *pad_dev = ints_ + 4 * n, *cached_dev = pad_dev + B, *tables_dev = cached_dev + B;
  layers(kv, ints_ + 2 * n, ints_ + 3 * n,
         [&](const Tensor& q, const Tensor& k, const Tensor& v, const ops::KvLayer& cache) {
           if (paged)
             be_.attention_prefill_paged(q, cache, tables_dev, W, pad_dev, cached_dev, B, L, attn_shape_, attn_);
           else
             be_.attention_prefill(q, k, v, pad_dev, B, L, attn_shape_, attn_);
         });
  be_.copy_rows(h_, L - 1, L, rows_);  // each row's last column
  lm_head(rows_);
  return step_;
}

const ForwardStep& ForwardPass::prepare_decode(const std::vector<int32_t>& tokens, const BlockTables& tables,
                                               const std::vector<int32_t>& positions,
                                               std::span<const ops::KvLayer> kv) {
  const int64_t B = static_cast<int64_t>(tokens.size()), W = tables.width;
  TESSERA_CHECK(B > 0 && W > 0 && static_cast<int64_t>(tables.blocks.size()) == B * W &&
                static_cast<int64_t>(positions.size()) == B);
  check_kv(kv);
  const size_t n_ints = static_cast<size_t>(6 * B + B * W);
  prepare(B, B, be_.decode_workspace_bytes(B, attn_shape_, W * kv[0].block_size), n_ints);
  // ints: ids [B] (local to the shard), positions [B], KV blocks [B], KV rows [B], starts [B] (zeros), lens [B],
  // tables [B, W]
  host_ints_.assign(n_ints, 0);
  int32_t *ids = host_ints_.data(), *pos = ids + B, *kv_blocks = pos + B, *kv_rows = kv_blocks + B,
          *lens = kv_rows + 2 * B, *t = lens + B;
  std::copy(tables.blocks.begin(), tables.blocks.end(), t);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t p = positions[static_cast<size_t>(b)];
    TESSERA_CHECK(p >= 0 && p < c_.max_ctx);
    ids[b] = local_id(tokens[static_cast<size_t>(b)]);
    pos[b] = p;
    locate(t + b * W, W, p, kv[0], kv_blocks + b, kv_rows + b);
    lens[b] = p + 1;
  }
  decode_width_ = W;
  be_.upload(ints_, host_ints_.data(), host_ints_.size() * sizeof(int32_t));
  return step_;
}

// Everything from the embedding to the logits reads its inputs from ints_ (uploaded by prepare_decode) and writes to
// fixed scratch addresses.
void ForwardPass::run_decode(std::span<const ops::KvLayer> kv) {
  const int64_t B = step_.B;
  const int32_t *kv_blocks = ints_ + 2 * B, *kv_rows = ints_ + 3 * B, *starts = ints_ + 4 * B, *lens = ints_ + 5 * B,
                *tables = ints_ + 6 * B;
  embed();
  layers(kv, kv_blocks, kv_rows, [&](const Tensor& q, const Tensor&, const Tensor&, const ops::KvLayer& cache) {
    be_.attention_decode(q, cache, tables, decode_width_, starts, lens, attn_shape_, workspace_, workspace_bytes_,
                         attn_);
  });
  lm_head(h_);  // decode rows are h's rows 0 … B−1
}

void ForwardPass::gather_logits() {
  if (tp_.size() == 1) return;
  const bool root = tp_.rank() == 0;
  tp_.gather(step_.logits_local.data, root ? step_.logits_all : nullptr, step_.B * step_.block,
             parallel::ElemType::kF32, 0);
}

std::vector<float> ForwardPass::logits_to_host() {
  const int64_t B = step_.B, block = step_.block, V = c_.vocab;
  const int size = tp_.size();
  std::vector<float> out;
  if (size == 1) {
    out.resize(static_cast<size_t>(B * V));
    be_.download(out.data(), step_.logits_local.data, out.size() * sizeof(float));
    return out;
  }
  gather_logits();
  if (tp_.rank() != 0) {
    be_.sync();
    return out;
  }
  // Rank r's [B, block] block holds vocabulary rows [r · block, min((r + 1) · block, V)): laid out as [B, V].
  std::vector<float> all(static_cast<size_t>(size * B * block));
  be_.download(all.data(), step_.logits_all, all.size() * sizeof(float));
  out.assign(static_cast<size_t>(B * V), 0.0f);
  for (int r = 0; r < size; ++r) {
    const int64_t v0 = std::min<int64_t>(r * block, V), v1 = std::min<int64_t>((r + 1) * block, V);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(out.data() + b * V + v0, all.data() + (r * B + b) * block, sizeof(float) * (v1 - v0));
  }
  return out;
}

}  // namespace tessera::worker
