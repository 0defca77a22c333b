// worker/cuda/device_arena.cpp — see device_arena.h.
#include "worker/cuda/device_arena.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "common/check.h"

namespace tessera::worker {

DeviceArena::~DeviceArena() {
  if (base_ != nullptr) {
    const cudaError_t err = cudaFree(base_);
    if (err != cudaSuccess)
      std::fprintf(stderr, "%s\n", gpu::cuda_error_text(err, "cudaFree(base_)", __FILE__, __LINE__).c_str());
  }
}

gpu::Status DeviceArena::reserve(size_t bytes) {
  if (base_ != nullptr) {
    TESSERA_CUDA_TRY(cudaFree(base_));
    base_ = nullptr;
    capacity_ = used_ = 0;
  }
  if (bytes == 0) return gpu::Status::success();
  void* p = nullptr;
  TESSERA_CUDA_TRY(cudaMalloc(&p, bytes));
  base_ = static_cast<char*>(p);
  capacity_ = bytes;
  used_ = 0;
  return gpu::Status::success();
}

void* DeviceArena::take(size_t bytes) {
  bytes = round_up(bytes);
  TESSERA_CHECK_MSG(used_ + bytes <= capacity_, "device arena sized too small: " + std::to_string(used_ + bytes) +
                                                    " > " + std::to_string(capacity_) + " bytes");
  void* p = base_ + used_;
  used_ += bytes;
  return p;
}

}  // namespace tessera::worker
