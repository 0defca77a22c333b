// kernels/cuda/device.cu — small host helpers shared by the op entries: dtype names, the device's SM count.
#include <mutex>
#include <unordered_map>

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
  }
  return "?";
}

int device_sm_count() {
  static std::mutex mu;
  static std::unordered_map<int, int> cache;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 1;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dev);
  if (it != cache.end()) return it->second;
  int n = 1;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) n = 1;
  cache[dev] = n;
  return n;
}

}  // namespace tessera::gpu
