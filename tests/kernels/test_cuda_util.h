// tests/kernels/test_cuda_util.h — what the GPU kernel tests share: skip without a device, typed device buffers
// (upload with rounding to the storage type, NaN poisoning, download as float), random data, the
// |gpu - ref| <= atol + rtol * |ref| check, tolerances per dtype.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"

namespace tessera::gpu::testing {

// Empty when a device is usable; otherwise why not (the GTEST_SKIP message).
inline std::string no_gpu_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) return std::string("no CUDA device: cudaGetDeviceCount failed: ") + cudaGetErrorString(err);
  if (n == 0) return "no CUDA device: cudaGetDeviceCount returned 0";
  return "";
}

#define TESSERA_SKIP_WITHOUT_GPU()                                        \
  do {                                                                    \
    const std::string reason_ = ::tessera::gpu::testing::no_gpu_reason(); \
    if (!reason_.empty()) GTEST_SKIP() << reason_;                        \
  } while (0)

// TESSERA_GPU_TEST_QUICK=1: the reduced shape set (compute-sanitizer runs).
inline bool quick() {
  const char* q = std::getenv("TESSERA_GPU_TEST_QUICK");
  return q != nullptr && q[0] == '1';
}

inline const DType kAllTypes[] = {DType::F32, DType::F16, DType::BF16};

inline float round_to(float x, DType t) {
  switch (t) {
    case DType::F32:
      return x;
    case DType::F16:
      return __half2float(__float2half_rn(x));
    case DType::BF16:
      return __bfloat162float(__float2bfloat16_rn(x));
    default:  // the weight block types: not activations
      break;
  }
  return x;
}

inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f, float mean = 0.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Rounds in place to what the device will hold, so that the CPU reference sees the same inputs.
inline void quantize(std::vector<float>& v, DType t) {
  for (auto& x : v) x = round_to(x, t);
}

// A device array of `n` elements of `dtype` (or raw bytes for index arrays).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t n, DType t) : n_(n), elem_(dtype_size(t)), dtype_(t) { alloc(); }
  static DeviceBuffer ints(const std::vector<int32_t>& v) {
    DeviceBuffer b;
    b.n_ = v.size();
    b.elem_ = 4;
    b.alloc();
    if (!v.empty()) TESSERA_CUDA_CHECK(cudaMemcpy(b.ptr_, v.data(), 4 * v.size(), cudaMemcpyHostToDevice));
    return b;
  }
  static DeviceBuffer from(const std::vector<float>& v, DType t) {
    DeviceBuffer b(v.size(), t);
    b.upload(v);
    return b;
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(n_, o.n_);
    std::swap(elem_, o.elem_);
    std::swap(dtype_, o.dtype_);
    return *this;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  void* get() const { return ptr_; }
  int32_t* i32() const { return static_cast<int32_t*>(ptr_); }
  size_t size() const { return n_; }

  void upload(const std::vector<float>& v) {
    std::vector<unsigned char> host(v.size() * elem_);
    for (size_t i = 0; i < v.size(); ++i) {
      if (dtype_ == DType::F32) {
        std::memcpy(&host[i * 4], &v[i], 4);
      } else if (dtype_ == DType::F16) {
        const __half h = __float2half_rn(v[i]);
        std::memcpy(&host[i * 2], &h, 2);
      } else {
        const __nv_bfloat16 h = __float2bfloat16_rn(v[i]);
        std::memcpy(&host[i * 2], &h, 2);
      }
    }
    TESSERA_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), host.size(), cudaMemcpyHostToDevice));
  }
  std::vector<float> download() const {
    std::vector<unsigned char> host(n_ * elem_);
    TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
    TESSERA_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, host.size(), cudaMemcpyDeviceToHost));
    std::vector<float> v(n_);
    for (size_t i = 0; i < n_; ++i) {
      if (dtype_ == DType::F32) {
        std::memcpy(&v[i], &host[i * 4], 4);
      } else if (dtype_ == DType::F16) {
        __half h;
        std::memcpy(&h, &host[i * 2], 2);
        v[i] = __half2float(h);
      } else {
        __nv_bfloat16 h;
        std::memcpy(&h, &host[i * 2], 2);
        v[i] = __bfloat162float(h);
      }
    }
    return v;
  }
  // All bytes 0xFF: NaN in f32, f16 and bf16, so an element the kernel forgets to write fails the check.
  void poison() { TESSERA_CUDA_CHECK(cudaMemset(ptr_, 0xFF, n_ * elem_)); }

 private:
  void alloc() {
    if (n_ > 0) TESSERA_CUDA_CHECK(cudaMalloc(&ptr_, n_ * elem_));
  }
  void* ptr_ = nullptr;
  size_t n_ = 0;
  size_t elem_ = 4;
  DType dtype_ = DType::F32;
};

struct Tol {
  double atol, rtol;
};

// Counts elements outside atol + rtol * |ref| (NaN never passes); reports the first few and the worst.
inline ::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& ref, Tol tol,
                                            size_t offset = 0, size_t count = SIZE_MAX) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.size();
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  std::string first;
  const size_t end = std::min(got.size(), offset + std::min(count, got.size()));
  for (size_t i = offset; i < end; ++i) {
    const double diff = std::abs(static_cast<double>(got[i]) - ref[i]);
    const double lim = tol.atol + tol.rtol * std::abs(static_cast<double>(ref[i]));
    if (!(diff <= lim)) {
      if (bad < 3)
        first += " [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " + std::to_string(ref[i]) + ";";
      ++bad;
      const double excess = std::isnan(diff) ? 1e30 : diff - lim;
      if (excess > worst_excess) worst_excess = excess, worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << (end - offset) << " elements off (atol " << tol.atol
                                       << ", rtol " << tol.rtol << "):" << first << " worst [" << worst << "] got "
                                       << got[worst] << " want " << ref[worst];
}

}  // namespace tessera::gpu::testing
