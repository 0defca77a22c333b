// worker/cuda/kv_pool.cpp — the CUDA runner's KV cache: one pool sized from the device's free memory
// (backend.kv_memory_fraction), the same slot count on every TP rank (see cuda_runner.h).
#include "worker/cuda/cuda_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/check.h"

namespace tessera::worker {

using gpu::DType;
using gpu::Status;

size_t kv_bytes_per_slot(const model::ModelConfig& c, int64_t n_kv_heads_local, int64_t max_ctx, DType dtype) {
  return 2 * static_cast<size_t>(c.n_layers) * static_cast<size_t>(n_kv_heads_local * max_ctx * c.head_dim) *
         gpu::dtype_size(dtype);
}

int64_t kv_slots_fitting(size_t free_bytes, double fraction, size_t bytes_per_slot) {
  if (bytes_per_slot == 0 || fraction <= 0.0) return 0;
  const double budget = static_cast<double>(free_bytes) * std::min(fraction, 1.0);
  // 256 bytes of alignment per layer tensor at most: keep one slot's worth of slack.
  return std::max<int64_t>(0, static_cast<int64_t>(budget / static_cast<double>(bytes_per_slot)) - 1);
}

void CudaRunner::set_kv_memory_fraction(double fraction) {
  if (!(fraction > 0.0 && fraction <= 1.0))
    throw Error("backend.kv_memory_fraction must be in (0, 1], got " + std::to_string(fraction));
  kv_memory_fraction_ = fraction;
}

int64_t CudaRunner::agree_on_slots(int64_t n) {
  if (tp_ == nullptr || tp_->size() < 2) return n;
  // The device communicator works on device buffers: gather every rank's count through one small allocation.
  const int size = tp_->size();
  std::vector<int32_t> all(static_cast<size_t>(size));
  const auto mine = static_cast<int32_t>(std::min<int64_t>(n, INT32_MAX));
  int32_t* d = nullptr;
  runner_check(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaMalloc(&d, sizeof(int32_t) * static_cast<size_t>(size + 1)));
        TESSERA_CUDA_TRY(cudaMemcpyAsync(d, &mine, sizeof mine, cudaMemcpyHostToDevice, stream_));
        return Status::success();
      }(),
      "KV slot agreement");
  tp_->all_gather(d, d + 1, 1, parallel::ElemType::kI32);
  const size_t all_bytes = sizeof(int32_t) * all.size();
  const cudaError_t copy = cudaMemcpyAsync(all.data(), d + 1, all_bytes, cudaMemcpyDeviceToHost, stream_);
  const cudaError_t sync = cudaStreamSynchronize(stream_);
  const cudaError_t freed = cudaFree(d);
  runner_check(
      [&]() -> Status {
        TESSERA_CUDA_TRY(copy);
        TESSERA_CUDA_TRY(sync);
        TESSERA_CUDA_TRY(freed);
        return Status::success();
      }(),
      "KV slot agreement");
  return *std::min_element(all.begin(), all.end());
}

KvGeometry CudaRunner::configure(const KvRequest& request) {
  int64_t n_slots = request.max_seqs;
  const int64_t max_ctx = request.max_ctx;
  TESSERA_CHECK(n_slots > 0 && max_ctx > 0);
  // The pool: at most kv_memory_fraction of the memory free now (the old pool counted as free), the same
  // number of slots on every TP rank (the smallest any rank can hold).
  const size_t per_slot = kv_bytes_per_slot(config_, n_kv_heads_, max_ctx, dtype_);
  const int64_t fits = max_slots_fitting(kv_memory_fraction_, max_ctx);
  const int64_t agreed = agree_on_slots(std::min(n_slots, fits));
  if (agreed < 1) {
    char msg[320];
    std::snprintf(msg, sizeof msg,
                  "KV cache: one slot of %lld tokens needs %.1f MB on this rank, more than backend.kv_memory_fraction "
                  "%.2f of the free device memory allows (%lld slots fit here): lower scheduler.max_ctx or raise "
                  "backend.kv_memory_fraction",
                  static_cast<long long>(max_ctx), static_cast<double>(per_slot) / 1e6, kv_memory_fraction_,
                  static_cast<long long>(fits));
    throw Error(msg);
  }
  n_slots = agreed;
  runner_check(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
        n_slots_ = max_ctx_ = 0;
        kv_bytes_ = 0;
        kv_layers_.clear();
        drop_decode_graphs();  // they hold the old pool's addresses (the key would also tell)
        const size_t per_layer = DeviceArena::round_up(static_cast<size_t>(n_slots * n_kv_heads_ * max_ctx) *
                                                       static_cast<size_t>(config_.head_dim) * esize_);
        const size_t bytes = 2 * static_cast<size_t>(config_.n_layers) * per_layer;
        TESSERA_STATUS_TRY(kv_.reserve(bytes));  // frees the old pool first
        TESSERA_CUDA_TRY(cudaMemsetAsync(kv_.take(bytes), 0, bytes, stream_));
        n_slots_ = n_slots;
        max_ctx_ = max_ctx;
        kv_bytes_ = bytes;
        // [n_slots, n_kv_heads, max_ctx, head_dim] of K, then of V, layer after layer.
        kv_layers_.assign(static_cast<size_t>(config_.n_layers), ops::KvLayer{});
        for (int64_t l = 0; l < config_.n_layers; ++l)
          kv_layers_[static_cast<size_t>(l)] = ops::KvLayer{kv_.base() + 2 * static_cast<size_t>(l) * per_layer,
                                                            kv_.base() + (2 * static_cast<size_t>(l) + 1) * per_layer,
                                                            dtype_,
                                                            n_slots,
                                                            n_kv_heads_,
                                                            max_ctx,
                                                            config_.head_dim};
        return Status::success();
      }(),
      "configure (KV cache)");
  return kv_geometry();
}

int64_t CudaRunner::max_slots_fitting(double fraction, int64_t max_ctx) const {
  size_t free_b = 0, total_b = 0;
  runner_check(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
        return Status::success();
      }(),
      "free memory");
  return kv_slots_fitting(free_b + kv_bytes_, fraction, kv_bytes_per_slot(config_, n_kv_heads_, max_ctx, dtype_));
}

}  // namespace tessera::worker
