// kernels/cuda/linear.cu — the GEMM op entry: cuBLAS GemmEx, then the optional bias pass.
#include "kernels/cuda/linear.cuh"

#include <unordered_map>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/common.cuh"

namespace tessera::gpu {

Status cublas_handle(cublasHandle_t* out) {
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  int dev = 0;
  TESSERA_CUDA_TRY(cudaGetDevice(&dev));
  auto it = handles.find(dev);
  if (it == handles.end()) {
    cublasHandle_t h = nullptr;
    TESSERA_CUBLAS_TRY(cublasCreate(&h));
    it = handles.emplace(dev, h).first;
  }
  *out = it->second;
  return Status::success();
}

Status linear(const void* x, const void* w, const void* bias, void* y, int64_t m, int64_t n, int64_t k, DType dtype,
              cudaStream_t stream) {
  const char* op = "linear";
  TESSERA_ARG_REQUIRE(op, "m", m >= 0 && m <= INT32_MAX, "must be in [0, 2^31), got " + std::to_string(m));
  TESSERA_ARG_REQUIRE(op, "n", n > 0 && n <= INT32_MAX, "must be in [1, 2^31), got " + std::to_string(n));
  TESSERA_ARG_REQUIRE(op, "k", k > 0 && k <= INT32_MAX, "must be in [1, 2^31), got " + std::to_string(k));
  if (m == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "x", x != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "w", w != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "y", y != nullptr, "null");
  cublasHandle_t handle = nullptr;
  TESSERA_STATUS_TRY(cublas_handle(&handle));
  TESSERA_CUBLAS_TRY(cublasSetStream(handle, stream));
  const cudaDataType_t type = dtype == DType::F32 ? CUDA_R_32F : dtype == DType::F16 ? CUDA_R_16F : CUDA_R_16BF;
  const float alpha = 1.f, beta = 0.f;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  // Column-major: yᵀ[n, m] = (w[n, k] as k x n col-major)ᵀ · (x[m, k] as k x m col-major).
  TESSERA_CUBLAS_TRY(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, ni, mi, ki, &alpha, w, type, ki, x, type, ki, &beta,
                                  y, type, ni, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (bias != nullptr) return launch_add_bias(y, bias, m, n, dtype, stream);
  return Status::success();
}

}  // namespace tessera::gpu
