// worker/model/transformer.cpp — GPT-2 / Llama layers over the residual stream, prefill and decode.
#include "worker/model/transformer.h"

#include <cmath>
#include <cstring>

#include "common/check.h"
#include "kernels/ops.h"
#include "parallel/transport.h"

namespace tessera::worker {

using model::Arch;

PrefillGroup PrefillGroup::make(const std::vector<std::vector<int32_t>>& prompts, const std::vector<int32_t>& slots) {
  TESSERA_CHECK(prompts.size() == slots.size() && !prompts.empty());
  PrefillGroup g;
  for (const auto& p : prompts) g.n_cols = std::max<int64_t>(g.n_cols, static_cast<int64_t>(p.size()));
  for (const auto& p : prompts) parallel::append_left_padded(g.tokens, g.pad, static_cast<int32_t>(g.n_cols), p);
  g.slots = slots;
  return g;
}

Transformer::Transformer(model::ModelWeights weights, parallel::Communicator* tp) : w_(std::move(weights)), tp_(tp) {
  if (tp_ == nullptr) {
    own_tp_ = parallel::make_single_communicator();
    tp_ = own_tp_.get();
  }
  TESSERA_CHECK(tp_->size() == w_.shard.tp_size && tp_->rank() == w_.shard.tp_rank);
  const auto& c = w_.config;
  n_heads_ = w_.shard.q_heads.size();
  n_kv_heads_ = w_.shard.kv_heads.size();
  n_ffn_ = w_.shard.ffn.size();
  vocab_local_ = w_.shard.vocab.size();
  qkv_cols_ = (n_heads_ + 2 * n_kv_heads_) * c.head_dim;
}

KvCache Transformer::make_cache(int64_t n_slots, int64_t max_ctx) const {
  const auto& c = w_.config;
  return KvCache(c.n_layers, n_slots, n_kv_heads_, max_ctx, c.head_dim);
}

namespace {

void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

}  // namespace

void Transformer::embed(const int32_t* tokens, const int32_t* positions, int64_t n) {
  const auto& c = w_.config;
  grow(x_, n * c.hidden);
  if (tp_->size() == 1) {
    ops::embedding(tokens, positions, w_.wte.data(), w_.wpe.empty() ? nullptr : w_.wpe.data(), x_.data(), n, c.hidden);
    return;
  }
  // Vocabulary-parallel: each rank writes the rows it owns and zeros elsewhere; the sum is the lookup.
  const auto [v0, v1] = w_.shard.vocab;
  for (int64_t i = 0; i < n; ++i) {
    float* o = x_.data() + i * c.hidden;
    if (tokens[i] >= v0 && tokens[i] < v1) {
      std::memcpy(o, w_.wte.data() + (tokens[i] - v0) * c.hidden, sizeof(float) * c.hidden);
    } else {
      std::memset(o, 0, sizeof(float) * c.hidden);
    }
  }
  tp_->all_reduce_sum(x_.data(), n * c.hidden, parallel::ElemType::kF32);
  if (!w_.wpe.empty())
    for (int64_t i = 0; i < n; ++i)
      for (int64_t d = 0; d < c.hidden; ++d) x_[i * c.hidden + d] += w_.wpe[positions[i] * c.hidden + d];
}

void Transformer::reduce_add_bias(float* y, const std::vector<float>& bias, int64_t n) {
  const int64_t hidden = w_.config.hidden;
  tp_->all_reduce_sum(y, n * hidden, parallel::ElemType::kF32);
  if (bias.empty()) return;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < hidden; ++d) y[i * hidden + d] += bias[static_cast<size_t>(d)];
}

template <typename Attend>
void Transformer::layers(int64_t n, const int32_t* positions, const int32_t* kv_slots, const int32_t* kv_positions,
                         KvCache& cache, Attend&& attend) {
  const auto& c = w_.config;
  const bool llama = c.arch == Arch::kLlama;
  const int64_t q_cols = n_heads_ * c.head_dim, kv_cols = n_kv_heads_ * c.head_dim;
  grow(h_, n * c.hidden);
  grow(qkv_, n * qkv_cols_);
  grow(attn_, n * q_cols);
  grow(proj_, n * c.hidden);
  grow(ffn_, n * (llama ? 2 : 1) * n_ffn_);
  grow(ffn_act_, n * n_ffn_);
  auto norm = [&](const std::vector<float>& g, const std::vector<float>& b) {  // h = norm(x)
    if (llama) {
      ops::rms_norm(x_.data(), g.data(), h_.data(), n, c.hidden, c.norm_eps);
    } else {
      ops::layer_norm(x_.data(), g.data(), b.data(), h_.data(), n, c.hidden, c.norm_eps);
    }
  };
  auto add_norm = [&](const std::vector<float>& g, const std::vector<float>& b) {  // x += proj; h = norm(x)
    if (llama) {
      ops::add_rms_norm(x_.data(), proj_.data(), g.data(), h_.data(), n, c.hidden, c.norm_eps);
    } else {
      ops::add_layer_norm(x_.data(), proj_.data(), g.data(), b.data(), h_.data(), n, c.hidden, c.norm_eps);
    }
  };
  auto bias = [](const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); };

  norm(w_.layers[0].attn_norm_w, w_.layers[0].attn_norm_b);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto& L = w_.layers[static_cast<size_t>(l)];
    // [n, hidden] → qkv [n, (n_heads + 2 n_kv_heads) · head_dim]
    ops::linear(h_.data(), L.wqkv.data(), bias(L.bqkv), qkv_.data(), n, qkv_cols_, c.hidden);
    if (llama) {
      ops::rope(qkv_.data(), positions, n, n_heads_, c.head_dim, qkv_cols_, c.rope_theta);
      ops::rope(qkv_.data() + q_cols, positions, n, n_kv_heads_, c.head_dim, qkv_cols_, c.rope_theta);
    }
    ops::kv_write(qkv_.data() + q_cols, qkv_.data() + q_cols + kv_cols, qkv_cols_, kv_slots, kv_positions, n,
                  cache.k(l), cache.v(l), n_kv_heads_, cache.max_ctx(), c.head_dim);
    attend(l);  // attn_ [n, n_heads_ · head_dim]
    // [n, local heads · head_dim] · wo[hidden, local]ᵀ: a partial sum over this rank's heads.
    ops::linear(attn_.data(), L.wo.data(), nullptr, proj_.data(), n, c.hidden, q_cols);
    reduce_add_bias(proj_.data(), L.bo, n);
    add_norm(L.ffn_norm_w, L.ffn_norm_b);
    if (llama) {
      ops::linear(h_.data(), L.w_up.data(), nullptr, ffn_.data(), n, 2 * n_ffn_, c.hidden);
      ops::silu_mul(ffn_.data(), ffn_act_.data(), n, n_ffn_);
    } else {
      ops::linear(h_.data(), L.w_up.data(), nullptr, ffn_act_.data(), n, n_ffn_, c.hidden);
      ops::add_bias_gelu(ffn_act_.data(), L.b_up.data(), n, n_ffn_);
    }
    ops::linear(ffn_act_.data(), L.w_down.data(), nullptr, proj_.data(), n, c.hidden, n_ffn_);
    reduce_add_bias(proj_.data(), L.b_down, n);
    if (l + 1 < c.n_layers) {
      const auto& next = w_.layers[static_cast<size_t>(l + 1)];
      add_norm(next.attn_norm_w, next.attn_norm_b);
    } else {
      for (int64_t i = 0; i < n * c.hidden; ++i) x_[static_cast<size_t>(i)] += proj_[static_cast<size_t>(i)];
    }
  }
}

std::vector<float> Transformer::logits(const std::vector<int64_t>& rows) {
  const auto& c = w_.config;
  const int64_t B = static_cast<int64_t>(rows.size());
  std::vector<float> last(static_cast<size_t>(B * c.hidden)), normed(static_cast<size_t>(B * c.hidden));
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(last.data() + b * c.hidden, x_.data() + rows[static_cast<size_t>(b)] * c.hidden,
                sizeof(float) * c.hidden);
  if (c.arch == Arch::kLlama) {
    ops::rms_norm(last.data(), w_.final_norm_w.data(), normed.data(), B, c.hidden, c.norm_eps);
  } else {
    ops::layer_norm(last.data(), w_.final_norm_w.data(), w_.final_norm_b.data(), normed.data(), B, c.hidden,
                    c.norm_eps);
  }
  if (tp_->size() == 1) {
    std::vector<float> out(static_cast<size_t>(B * c.vocab));
    ops::linear(normed.data(), w_.output_matrix().data(), nullptr, out.data(), B, c.vocab, c.hidden);
    return out;
  }
  // Each rank's [B, shard] block, padded to the largest shard, is gathered to TP rank 0 and laid out as
  // [B, vocab] there.
  const int64_t block = (c.vocab + tp_->size() - 1) / tp_->size();
  std::vector<float> local(static_cast<size_t>(B * block), 0.0f), shard_logits(static_cast<size_t>(B * vocab_local_));
  ops::linear(normed.data(), w_.output_matrix().data(), nullptr, shard_logits.data(), B, vocab_local_, c.hidden);
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(local.data() + b * block, shard_logits.data() + b * vocab_local_, sizeof(float) * vocab_local_);
  const bool root = tp_->rank() == 0;
  std::vector<float> all(root ? static_cast<size_t>(tp_->size() * B * block) : 0);
  tp_->gather(local.data(), root ? all.data() : nullptr, B * block, parallel::ElemType::kF32, 0);
  if (!root) return {};
  std::vector<float> out(static_cast<size_t>(B * c.vocab));
  for (int r = 0; r < tp_->size(); ++r) {
    const int64_t v0 = std::min<int64_t>(r * block, c.vocab), v1 = std::min<int64_t>((r + 1) * block, c.vocab);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(out.data() + b * c.vocab + v0, all.data() + (r * B + b) * block, sizeof(float) * (v1 - v0));
  }
  return out;
}

std::vector<float> Transformer::prefill(const PrefillGroup& g, KvCache& cache) {
  const auto& c = w_.config;
  const int64_t B = g.n_rows(), L = g.n_cols, n = B * L;
  TESSERA_CHECK(static_cast<int64_t>(g.tokens.size()) == n && static_cast<int64_t>(g.slots.size()) == B);
  TESSERA_CHECK(L <= cache.max_ctx() && L <= c.max_ctx);
  std::vector<int32_t> positions(static_cast<size_t>(n)), kv_slots(static_cast<size_t>(n));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t col = 0; col < L; ++col) {
      const bool is_pad = col < g.pad[static_cast<size_t>(b)];
      positions[static_cast<size_t>(b * L + col)] =
          is_pad ? 0 : static_cast<int32_t>(col - g.pad[static_cast<size_t>(b)]);
      kv_slots[static_cast<size_t>(b * L + col)] = is_pad ? -1 : g.slots[static_cast<size_t>(b)];
    }
  }
  embed(g.tokens.data(), positions.data(), n);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int64_t q_cols = n_heads_ * c.head_dim, kv_cols = n_kv_heads_ * c.head_dim;
  layers(n, positions.data(), kv_slots.data(), positions.data(), cache, [&](int64_t) {
    ops::attention_prefill(qkv_.data(), qkv_cols_, qkv_.data() + q_cols, qkv_.data() + q_cols + kv_cols, qkv_cols_,
                           g.pad.data(), attn_.data(), B, L, n_heads_, n_kv_heads_, c.head_dim, scale);
  });
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < B; ++b) rows.push_back(b * L + L - 1);
  return logits(rows);
}

std::vector<float> Transformer::decode(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                                       const std::vector<int32_t>& positions, KvCache& cache) {
  const auto& c = w_.config;
  const int64_t B = static_cast<int64_t>(tokens.size());
  TESSERA_CHECK(static_cast<int64_t>(slots.size()) == B && static_cast<int64_t>(positions.size()) == B);
  std::vector<int32_t> starts(static_cast<size_t>(B), 0), lens(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    TESSERA_CHECK(positions[static_cast<size_t>(b)] < cache.max_ctx() && positions[static_cast<size_t>(b)] < c.max_ctx);
    lens[static_cast<size_t>(b)] = positions[static_cast<size_t>(b)] + 1;
  }
  embed(tokens.data(), positions.data(), B);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  layers(B, positions.data(), slots.data(), positions.data(), cache, [&](int64_t l) {
    ops::attention_decode(qkv_.data(), qkv_cols_, cache.k(l), cache.v(l), slots.data(), starts.data(), lens.data(),
                          attn_.data(), B, n_heads_, n_kv_heads_, c.head_dim, cache.max_ctx(), scale);
  });
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < B; ++b) rows.push_back(b);
  return logits(rows);
}

}  // namespace tessera::worker
