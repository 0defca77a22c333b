// worker/model/forward.h — the forward pass of GPT-2 and Llama, written once over the op interface of
// kernels/backend.h: the CPU Transformer (worker/model/transformer.h) and the CUDA runner (worker/cuda) both run it.
//
// prefill(): one pre-padded group (EET): B prompts left-padded to L columns run as [B·L, hidden] GEMMs; pad
//   columns are skipped by attention and by the KV-cache write; the logits are those of each row's last column.
// decode: one new token per sequence at its own position (= its current length), attention over its own cached
//   range; split into prepare_decode() (host work: checks, scratch, the index arrays' upload) and run_decode()
//   (backend work only, reading fixed scratch addresses: what a CUDA graph captures and replays).
// Outputs do not depend on padding or on the other rows of the batch.
// Tensor parallelism: the weights hold one rank's shard (heads, FFN features, vocabulary rows); the two row-split
// projections of each layer are all-reduced through `tp` (TP rank 0 adds their replicated biases), the embedding is
// vocabulary-parallel (looked up where owned, all-reduced in fp32), and each rank's logits block is gathered to TP
// rank 0. Every call is collective over `tp`, whose collectives must take the backend's memory (MPI for host
// buffers, NCCL for device buffers).
// Precision: the residual stream is fp32 on every backend (fused fp32 add + norm); matmul inputs and outputs, the
// KV cache and the normalized activations are in the backend's act_dtype(); the logits are fp32 out of the GEMM.
// KV: a paged cache (kernels/backend.h's KvLayer) read and written through each row's block table; a prefill row may
//   start after a cached prefix (PrefillGroup::cached), whose keys it attends to without recomputing them.
// Errors: a malformed group or step (a position past the context, a block outside the cache) is a programmer error
// (TESSERA_CHECK); a backend failure throws tessera::Error. Not thread-safe: one engine loop drives it.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kernels/backend.h"
#include "parallel/communicator.h"
#include "parallel/sharding.h"
#include "worker/model/config.h"

namespace tessera::model {
struct ModelWeights;
struct HostTensor;
}  // namespace tessera::model

namespace tessera::worker {

// The KV blocks of a step's rows (the paged cache of kernels/backend.h): row b's block table is
// blocks[b · width, (b + 1) · width) (entries past the row's last block are not read). A KV cache of one block per
// sequence (block_size = the context) has tables of width 1: the slots.
struct BlockTables {
  int64_t width = 0;
  std::vector<int32_t> blocks;  // [rows, width]
  static BlockTables slots(const std::vector<int32_t>& slots) { return {1, slots}; }
};

struct PrefillGroup {
  int64_t n_cols = 0;           // L: the longest row's length
  std::vector<int32_t> tokens;  // [B, L] left-padded: each row's tokens after its cached prefix; pad entries ignored
  std::vector<int32_t> pad;     // [B]: pad columns of each row (L - its length)
  std::vector<int32_t> cached;  // [B] or empty (zeros): positions of the row already in the cache (a prefix)
  BlockTables tables;           // [B] rows
  int64_t n_rows() const { return static_cast<int64_t>(pad.size()); }
  // Builds a group from prompts (each non-empty), nothing cached, each in its own KV slot (a cache of one block
  // per sequence).
  static PrefillGroup make(const std::vector<std::vector<int32_t>>& prompts, const std::vector<int32_t>& slots);
};

// A model's weights where the backend keeps them, with their shapes (one TP rank's shard).
struct LayerTensors {
  ops::Tensor attn_norm_w, attn_norm_b;  // [1, hidden]; _b only for GPT-2
  ops::Tensor wqkv, bqkv;                // [(heads + 2 kv_heads) · head_dim, hidden], bias [1, …] or empty
  ops::Tensor wo, bo;                    // [hidden, heads · head_dim], bias [1, hidden] or empty
  ops::Tensor ffn_norm_w, ffn_norm_b;
  ops::Tensor w_up, b_up;      // Llama: [2 ffn, hidden] (gate rows, then up rows); GPT-2: [ffn, hidden] + bias
  ops::Tensor w_down, b_down;  // [hidden, ffn], GPT-2's bias [1, hidden]
};
struct ModelTensors {
  ops::Tensor wte, wpe;  // [vocab shard, hidden]; GPT-2's [max_ctx, hidden]
  ops::Tensor final_norm_w, final_norm_b;
  ops::Tensor out_matrix;  // the lm_head [vocab shard, hidden] (wte when tied)
  std::vector<LayerTensors> layers;
};

// Puts one host tensor (model/weights.h: [rows, cols] in its file's type) where the backend reads it and returns
// its Tensor (the CPU: a view of the host bytes; CUDA: a copy in its weight arena in the storage dtype). zero_rows:
// rows of zeros the backend may append (the embedding's row for tokens another rank owns; a backend that
// bounds-checks ids need not).
using PlaceWeight = std::function<ops::Tensor(const model::HostTensor& host, int64_t zero_rows)>;
// Every tensor of `w`, placed, in the order above (the placement may be called twice, e.g. to size an arena).
ModelTensors place_weights(const model::ModelWeights& w, const PlaceWeight& place);

// The buffers of the last call, valid until the next one.
struct ForwardStep {
  int64_t n = 0;                // rows run through the layers (prefill B·L, decode B)
  int64_t B = 0;                // output rows
  int64_t block = 0;            // logits columns per rank (the largest vocabulary shard; vocab at TP 1)
  ops::Tensor logits_local;     // fp32 [B, block]: this rank's vocabulary shard (columns past it unused)
  float* logits_all = nullptr;  // [tp, B, block] fp32, filled on rank 0 by gather_logits() (TP > 1)
};

class ForwardPass {
 public:
  ForwardPass(const model::ModelConfig& config, const parallel::Shard& shard, ModelTensors weights,
              ops::Backend& backend, parallel::Communicator& tp);

  const model::ModelConfig& config() const { return c_; }
  int64_t n_kv_heads() const { return n_kv_heads_; }  // this rank's
  ops::Backend& backend() { return be_; }

  // kv: one entry per layer (the cache of this rank's KV heads).
  const ForwardStep& prefill(const PrefillGroup& group, std::span<const ops::KvLayer> kv);
  // tokens, positions: [B]; tables: [B] rows (each covers its position).
  const ForwardStep& prepare_decode(const std::vector<int32_t>& tokens, const BlockTables& tables,
                                    const std::vector<int32_t>& positions, std::span<const ops::KvLayer> kv);
  void run_decode(std::span<const ops::KvLayer> kv);
  // After prefill() / run_decode(): TP > 1 gathers every rank's logits block to rank 0's logits_all (collective);
  // nothing at TP 1.
  void gather_logits();
  // After prefill() / run_decode(): the logits [B, vocab] on the host of TP rank 0, empty on the others
  // (collective: gathers and waits for the backend).
  std::vector<float> logits_to_host();

 private:
  void prepare(int64_t n, int64_t B, size_t workspace_bytes, size_t n_ints);
  // The KV block and row of position p of a row with block table t (checked against the cache).
  void locate(const int32_t* t, int64_t width, int64_t p, const ops::KvLayer& cache, int32_t* block,
              int32_t* row) const;
  int32_t local_id(int32_t token) const;  // the row of wte this rank looks up (vocab_local: not owned here)
  void embed();
  template <typename Attend>
  void layers(std::span<const ops::KvLayer> kv, const int32_t* kv_blocks, const int32_t* kv_rows, Attend&& attend);
  void all_reduce(const ops::Tensor& t);
  void lm_head(const ops::Tensor& rows_normed);
  void check_kv(std::span<const ops::KvLayer> kv) const;

  model::ModelConfig c_;
  parallel::Shard shard_;
  ModelTensors w_;
  ops::Backend& be_;
  parallel::Communicator& tp_;
  ops::NormKind norm_;
  int64_t n_heads_ = 0, n_kv_heads_ = 0, n_ffn_ = 0, vocab_local_ = 0, qkv_cols_ = 0;
  ops::AttentionShape attn_shape_;

  // This call's buffers (prepare()).
  ForwardStep step_;
  ops::Tensor x_, h_, qkv_, attn_, proj_, ffn_, ffn_act_, rows_;
  int32_t* ints_ = nullptr;  // ids, positions, KV blocks and rows, then pad, cached | starts, lens; tables: one upload
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::vector<int32_t> host_ints_;  // the upload's source: alive until the backend's next sync
  int64_t decode_width_ = 0;        // prepare_decode()'s block-table width
};

}  // namespace tessera::worker
