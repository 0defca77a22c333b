// worker/kv_cache.h — the KV cache: one slot per running sequence, [n_slots, n_kv_heads, max_ctx, head_dim]
// per layer for K and for V (fp32, or fp16 / bf16: backend.cpu_kv_dtype), plus the free list of slots.
//
// A sequence's keys live at positions [0, length) of its slot (prefill writes only real tokens, so left
// padding costs no cache).  Not thread-safe: owned by the engine loop.
#pragma once

#include <cstdint>
#include <vector>

#include "common/check.h"
#include "kernels/tensor.h"

namespace tessera::worker {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_slots, int64_t n_kv_heads, int64_t max_ctx, int64_t head_dim,
          ops::DType dtype = ops::DType::F32)
      : n_layers_(n_layers),
        n_slots_(n_slots),
        n_kv_heads_(n_kv_heads),
        max_ctx_(max_ctx),
        head_dim_(head_dim),
        dtype_(dtype) {
    TESSERA_CHECK(!ops::is_block_type(dtype));
    const size_t per_layer = static_cast<size_t>(n_slots * n_kv_heads * max_ctx * head_dim) * ops::dtype_size(dtype);
    k_.resize(static_cast<size_t>(n_layers));
    v_.resize(static_cast<size_t>(n_layers));
    for (int64_t l = 0; l < n_layers; ++l) {
      k_[static_cast<size_t>(l)].assign(per_layer, 0);
      v_[static_cast<size_t>(l)].assign(per_layer, 0);
    }
    for (int64_t s = n_slots - 1; s >= 0; --s) free_.push_back(static_cast<int32_t>(s));
  }

  void* k(int64_t layer) { return k_[static_cast<size_t>(layer)].data(); }
  void* v(int64_t layer) { return v_[static_cast<size_t>(layer)].data(); }
  ops::DType dtype() const { return dtype_; }
  int64_t n_slots() const { return n_slots_; }
  int64_t max_ctx() const { return max_ctx_; }
  int64_t n_free() const { return static_cast<int64_t>(free_.size()); }
  size_t n_bytes() const {
    return 2 * ops::dtype_size(dtype_) * static_cast<size_t>(n_layers_ * n_slots_ * n_kv_heads_ * max_ctx_ * head_dim_);
  }

  // Returns a free slot, or -1 when all are taken.
  int32_t acquire() {
    if (free_.empty()) return -1;
    const int32_t s = free_.back();
    free_.pop_back();
    return s;
  }
  void release(int32_t slot) {
    TESSERA_CHECK(slot >= 0 && slot < n_slots_);
    free_.push_back(slot);
  }

 private:
  int64_t n_layers_, n_slots_, n_kv_heads_, max_ctx_, head_dim_;
  ops::DType dtype_;
  std::vector<std::vector<uint8_t>> k_, v_;
  std::vector<int32_t> free_;
};

}  // namespace tessera::worker
