// worker/model/transformer.cpp — see transformer.h.
#include "worker/model/transformer.h"

#include <string>

#include "common/check.h"

namespace tessera::worker {

Transformer::Transformer(model::ModelWeights weights, parallel::Communicator* tp) : w_(std::move(weights)), tp_(tp) {
  if (tp_ == nullptr) {
    own_tp_ = parallel::make_single_communicator();
    tp_ = own_tp_.get();
  }
  // The CPU reads the weights where they are, in their type: every Tensor is a view of w_'s host bytes (often
  // of the memory-mapped file itself).
  auto view = [](const model::HostTensor& h, int64_t /*zero_rows*/) { return h.tensor(); };
  forward_ = std::make_unique<ForwardPass>(w_.config, w_.shard, place_weights(w_, view), backend_, *tp_);
}

void Transformer::set_kv_dtype(ops::DType t) {
  if (!backend_.kv_dtype_supported(t))
    throw Error(std::string("the CPU KV cache cannot be ") + ops::dtype_name(t) + " (fp32, fp16 or bf16)");
  kv_dtype_ = t;
}

KvCache Transformer::make_cache(int64_t n_blocks, int64_t block_size) const {
  const auto& c = w_.config;
  return KvCache(c.n_layers, n_blocks, forward_->n_kv_heads(), block_size, c.head_dim, kv_dtype_);
}

size_t Transformer::kv_bytes_per_block(int64_t block_size) const {
  return static_cast<size_t>(w_.config.n_layers) *
         KvCache::bytes_per_block(forward_->n_kv_heads(), block_size, w_.config.head_dim, kv_dtype_);
}

std::vector<ops::KvLayer> Transformer::kv_layers(KvCache& cache) const {
  std::vector<ops::KvLayer> kv(static_cast<size_t>(w_.config.n_layers));
  for (int64_t l = 0; l < w_.config.n_layers; ++l)
    kv[static_cast<size_t>(l)] =
        ops::KvLayer{cache.k(l),         cache.v(l),        cache.dtype(), cache.n_blocks(), forward_->n_kv_heads(),
                     cache.block_size(), w_.config.head_dim};
  return kv;
}

std::vector<float> Transformer::prefill(const PrefillGroup& group, KvCache& cache) {
  forward_->prefill(group, kv_layers(cache));
  return forward_->logits_to_host();
}

std::vector<float> Transformer::decode(const std::vector<int32_t>& tokens, const BlockTables& tables,
                                       const std::vector<int32_t>& positions, KvCache& cache) {
  const auto kv = kv_layers(cache);
  forward_->prepare_decode(tokens, tables, positions, kv);
  forward_->run_decode(kv);
  return forward_->logits_to_host();
}

}  // namespace tessera::worker
