// worker/kv_cache.h — the CPU KV cache: a pool of n_blocks blocks of block_size tokens,
// [n_blocks, n_kv_heads, block_size, head_dim] per layer for K and for V (fp32, or fp16 / bf16:
// backend.cpu_kv_dtype). Which block holds which positions of which sequence is the block tables' business (the
// coordinator's BlockPool; kernels/backend.h's KvLayer): a sequence's position p is row p % block_size of block
// table[p / block_size]. One block of max_ctx tokens per sequence is the slot layout (tables of width 1).
//
// Prefill writes only real tokens, so left padding costs no cache. The memory comes from calloc: a large request is
// mapped zero pages, resident only once written, so the RSS grows with the blocks in use (the BlockPool hands out
// the lowest free block first), not with the budget. Not thread-safe: owned by the engine loop.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "kernels/tensor.h"

namespace tessera::worker {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_blocks, int64_t n_kv_heads, int64_t block_size, int64_t head_dim,
          ops::DType dtype = ops::DType::F32)
      : n_layers_(n_layers),
        n_blocks_(n_blocks),
        n_kv_heads_(n_kv_heads),
        block_size_(block_size),
        head_dim_(head_dim),
        dtype_(dtype) {
    TESSERA_CHECK(!ops::is_block_type(dtype) && n_blocks > 0 && block_size > 0);
    const size_t per_layer = bytes_per_block(n_kv_heads, block_size, head_dim, dtype) / 2 * n_blocks;
    for (int64_t l = 0; l < 2 * n_layers; ++l) {
      Buffer b(std::calloc(per_layer, 1));
      if (!b)
        throw Error("the CPU KV cache (" + std::to_string(2 * n_layers * per_layer) +
                    " bytes) could not be allocated: lower backend.cpu_kv_memory_mb or scheduler.max_running");
      buffers_.push_back(std::move(b));
    }
  }
  // K + V bytes of one block in one layer.
  static size_t bytes_per_block(int64_t n_kv_heads, int64_t block_size, int64_t head_dim, ops::DType dtype) {
    return 2 * ops::dtype_size(dtype) * static_cast<size_t>(n_kv_heads * block_size * head_dim);
  }
  void* k(int64_t layer) { return buffers_[static_cast<size_t>(2 * layer)].get(); }
  void* v(int64_t layer) { return buffers_[static_cast<size_t>(2 * layer + 1)].get(); }
  ops::DType dtype() const { return dtype_; }
  int64_t n_blocks() const { return n_blocks_; }
  int64_t block_size() const { return block_size_; }
  size_t n_bytes() const {
    return static_cast<size_t>(n_layers_ * n_blocks_) * bytes_per_block(n_kv_heads_, block_size_, head_dim_, dtype_);
  }

 private:
  int64_t n_layers_, n_blocks_, n_kv_heads_, block_size_, head_dim_;
  ops::DType dtype_;
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  using Buffer = std::unique_ptr<void, Free>;
  std::vector<Buffer> buffers_;  // K of layer l at 2l, V at 2l + 1
};

}  // namespace tessera::worker
