// worker/model/transformer.h — the CPU model: the forward pass of worker/model/forward.h on the CPU backend
// (kernels/cpu/cpu_backend.h, fp32) over weights in host memory and a host KV cache.
//
// prefill() / decode() are forward.h's, returning the logits on the host: [B, vocab] of each row's last prompt
// token, or of each sequence's new token, on TP rank 0 (other TP ranks get an empty vector). With a communicator
// the weights hold one rank's shard and every call is collective over it (MPI between the TP ranks).
// Not thread-safe (the backend owns the scratch buffers); one per engine loop.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "parallel/communicator.h"
#include "worker/kv_cache.h"
#include "worker/model/forward.h"
#include "worker/model/weights.h"

namespace tessera::worker {

class Transformer {
 public:
  // tp == nullptr: a single rank (the weights must hold the whole model).
  explicit Transformer(model::ModelWeights weights, parallel::Communicator* tp = nullptr);

  const model::ModelConfig& config() const { return w_.config; }
  const model::ModelWeights& weights() const { return w_; }
  // The KV cache's element type: fp32 (the default), fp16 or bf16 (half the memory; decode reads half the bytes).
  void set_kv_dtype(ops::DType t);
  ops::DType kv_dtype() const { return kv_dtype_; }
  // How the products with block-type weights run: fp32 activations (exact, the default) or int8 (kernels/cpu/quant.h).
  void set_activations(ops::Activations a) { backend_.set_activations(a); }
  ops::Activations activations() const { return backend_.activations(); }
  // A KV cache of n_blocks blocks of block_size tokens (kv_cache.h); one block of max_ctx tokens per sequence is
  // the slot layout of the tests (BlockTables::slots).
  KvCache make_cache(int64_t n_blocks, int64_t block_size) const;
  size_t kv_bytes_per_block(int64_t block_size) const;  // K + V of every layer, this rank's heads
  // Returns logits [B, vocab] of each row's last prompt token (on TP rank 0; other ranks get an empty vector).
  std::vector<float> prefill(const PrefillGroup& group, KvCache& cache);
  // tokens, positions: [B]; tables: [B] rows; returns logits [B, vocab].
  std::vector<float> decode(const std::vector<int32_t>& tokens, const BlockTables& tables,
                            const std::vector<int32_t>& positions, KvCache& cache);
  // The slot layout (a cache of one block of max_ctx tokens per sequence): block tables of width 1.
  std::vector<float> decode_slots(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                                  const std::vector<int32_t>& positions, KvCache& cache) {
    return decode(tokens, BlockTables::slots(slots), positions, cache);
  }

 private:
  std::vector<ops::KvLayer> kv_layers(KvCache& cache) const;

  model::ModelWeights w_;
  std::unique_ptr<parallel::Communicator> own_tp_;
  parallel::Communicator* tp_;
  ops::CpuBackend backend_;
  ops::DType kv_dtype_ = ops::DType::F32;
  std::unique_ptr<ForwardPass> forward_;
};

}  // namespace tessera::worker
