// worker/encoder_runner.h — what the engine needs from an encoder (BERT family) on a backend: a pre-padded group of
// token sequences in, one pooled embedding per row out (issue 16).
//
// In: a PrefillGroup (worker/model/forward.h) of B rows left-padded to L columns — each row is [CLS] … [SEP] as the
// coordinator's WordPiece tokenizer made it; pad columns are neither attended to nor computed (EET's pre-padding);
// `cached` and `tables` are unused (an encoder keeps no KV) — and the token reduction to apply (TR-BERT).
// Out: [B, dim] fp32 row-major on TP rank 0 (empty on the other ranks): the model's pooling (sentence-transformers'
// modules.json and 1_Pooling/config.json: mean, CLS or max over the row's tokens) and, when the modules list
// Normalize, L2 normalization. A row's embedding does not depend on the other rows of the group or on its padding.
// Collective over the runner's TP group: every rank runs every call in the same order. Not thread-safe: one engine
// loop drives a runner.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/model/config.h"
#include "worker/model/forward.h"

namespace tessera::worker {

// Dynamic token reduction (TR-BERT's mechanism without its learned policy): after each layer listed in `layers`
// (0-based, ascending) a row keeps the ceil(keep × n) of its n remaining tokens that score highest (the attention
// that layer already computed; [CLS] always stays); the dropped tokens skip the remaining layers and enter the
// pooling with their last hidden state. keep = 1 or no layers: off.
struct TokenReduction {
  std::vector<int32_t> layers;
  float keep = 1.0f;
  bool enabled() const { return keep < 1.0f && !layers.empty(); }
};

class EncoderRunner {
 public:
  virtual ~EncoderRunner() = default;
  virtual const model::ModelConfig& config() const = 0;
  virtual int64_t dim() const = 0;  // the embedding's width
  // Throws tessera::Error on a backend failure; a malformed group (a row longer than the model's positions, an
  // empty row) is a programmer error (TESSERA_CHECK): the coordinator checks lengths before it sends them.
  virtual std::vector<float> embed(const PrefillGroup& group, const TokenReduction& reduction) = 0;
};

}  // namespace tessera::worker
