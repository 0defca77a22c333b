// kernels/cuda/device.cu — small host helpers shared by the op entries: the device's SM count.
#include <mutex>
#include <unordered_map>

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {

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
