// worker/cuda/weight_upload.cpp — the CUDA runner's weights: one TP rank's fp32 host tensors into one device
// arena, in the storage dtype (see cuda_runner.h).
#include "worker/cuda/cuda_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>

#include "common/check.h"

namespace tessera::worker {

using gpu::DType;
using gpu::Status;

namespace {
constexpr int64_t kStagingFloats = int64_t{16} << 20;  // fp32 staging of the weight upload: 64 MiB
}  // namespace

// Two passes over place_weights: the first sizes the arena (and the staging buffer), the second copies every tensor
// in, converted to the storage dtype. Under TP the embedding gets one zero row past the shard: an id another rank
// owns reads it (then the all-reduce sums exactly one non-zero row per token, as the CPU's bounds check does).
ModelTensors CudaRunner::upload(const model::ModelWeights& w) {
  size_t total = 0, largest = 0;
  place_weights(w, [&](const model::HostTensor& h, int64_t zero_rows) {
    total += DeviceArena::round_up(static_cast<size_t>(h.numel() + zero_rows * h.cols) * esize_);
    largest = std::max(largest, static_cast<size_t>(h.numel()));
    return ops::Tensor{};
  });
  runner_check(weights_.reserve(total), "weight upload");
  float* staging = nullptr;
  if (dtype_ != DType::F32) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(largest), kStagingFloats));
    runner_check(
        [&]() -> Status {
          TESSERA_CUDA_TRY(cudaMalloc(&staging, std::max<size_t>(n, 1) * sizeof(float)));
          return Status::success();
        }(),
        "weight upload (staging)");
  }
  Status st;
  std::vector<std::vector<float>> converted_all;  // host sources of the asynchronous copies, alive until the sync
  auto put = [&](const model::HostTensor& h, int64_t zero_rows) {
    const int64_t rows = h.rows, cols = h.cols;
    // Weights of a block or 16-bit type are dequantized on the host first (the GPU kernels take fp32/fp16/bf16).
    const float* src = nullptr;
    if (h.dtype == ops::DType::F32 && !h.transposed) {
      src = h.f32_data();
    } else {
      converted_all.push_back(h.to_f32());
      src = converted_all.back().data();
    }
    const std::span<const float> v(src, static_cast<size_t>(h.numel()));
    const size_t extra = static_cast<size_t>(zero_rows * cols);
    void* dst = weights_.take((v.size() + extra) * esize_);
    if (st.ok()) {
      st = [&]() -> Status {
        if (dtype_ == DType::F32) {
          TESSERA_CUDA_TRY(cudaMemcpyAsync(dst, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
        } else {
          // Chunks through the staging buffer; stream order keeps a chunk's copy behind the previous conversion.
          for (size_t i = 0; i < v.size(); i += static_cast<size_t>(kStagingFloats)) {
            const size_t n = std::min(v.size() - i, static_cast<size_t>(kStagingFloats));
            TESSERA_CUDA_TRY(
                cudaMemcpyAsync(staging, v.data() + i, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
            TESSERA_STATUS_TRY(gpu::convert_from_f32(staging, static_cast<char*>(dst) + i * esize_,
                                                     static_cast<int64_t>(n), dtype_, stream_));
          }
        }
        if (extra > 0)
          TESSERA_CUDA_TRY(cudaMemsetAsync(static_cast<char*>(dst) + v.size() * esize_, 0, extra * esize_, stream_));
        return Status::success();
      }();
    }
    return ops::Tensor::dense(dst, dtype_, rows, cols);
  };
  ModelTensors t = place_weights(w, put);
  // The staging buffer and the pageable sources must outlive the copies.
  const cudaError_t sync = cudaStreamSynchronize(stream_);
  const cudaError_t freed = staging != nullptr ? cudaFree(staging) : cudaSuccess;
  runner_check(st, "weight upload");
  runner_check(
      [&]() -> Status {
        TESSERA_CUDA_TRY(sync);
        TESSERA_CUDA_TRY(freed);
        return Status::success();
      }(),
      "weight upload");
  return t;
}

}  // namespace tessera::worker
