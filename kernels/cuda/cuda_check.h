// kernels/cuda/cuda_check.h — every CUDA / cuBLAS call is checked where it happens.
//
// Two flavours, both naming the expression, the file and the line:
//   TESSERA_CUDA_TRY(expr)     inside a function returning tessera::gpu::Status: returns the error as data.
//   TESSERA_CUDA_CHECK(expr)   in tests, benchmarks and tools: prints and aborts (an invariant, not a request).
//   TESSERA_CUDA_TRY_LAUNCH()  after every kernel launch (reads cudaGetLastError).
// Host-only header; safe to include from .cpp files compiled by the host compiler.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace tessera::gpu {

// The result of an op entry: empty message means success. Returned by value, never thrown.
struct [[nodiscard]] Status {
  std::string message;
  bool ok() const { return message.empty(); }
  static Status success() { return {}; }
  static Status error(std::string msg) { return Status{std::move(msg)}; }
};

inline std::string cuda_error_text(cudaError_t err, const char* expr, const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " + cudaGetErrorName(err) + " (" +
         cudaGetErrorString(err) + ")";
}

inline std::string cublas_error_text(cublasStatus_t st, const char* expr, const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: cuBLAS status " +
         std::to_string(static_cast<int>(st)) + " (" + cublasGetStatusString(st) + ")";
}

}  // namespace tessera::gpu

#define TESSERA_CUDA_TRY(expr)                                                                                        \
  do {                                                                                                                \
    cudaError_t tessera_err_ = (expr);                                                                                \
    if (tessera_err_ != cudaSuccess)                                                                                  \
      return ::tessera::gpu::Status::error(::tessera::gpu::cuda_error_text(tessera_err_, #expr, __FILE__, __LINE__)); \
  } while (0)

#define TESSERA_CUDA_TRY_LAUNCH() TESSERA_CUDA_TRY(cudaGetLastError())

#define TESSERA_CUBLAS_TRY(expr)                                                                                       \
  do {                                                                                                                 \
    cublasStatus_t tessera_st_ = (expr);                                                                               \
    if (tessera_st_ != CUBLAS_STATUS_SUCCESS)                                                                          \
      return ::tessera::gpu::Status::error(::tessera::gpu::cublas_error_text(tessera_st_, #expr, __FILE__, __LINE__)); \
  } while (0)

#define TESSERA_STATUS_TRY(expr)                \
  do {                                          \
    ::tessera::gpu::Status tessera_s_ = (expr); \
    if (!tessera_s_.ok()) return tessera_s_;    \
  } while (0)

#define TESSERA_CUDA_CHECK(expr)                                                                                      \
  do {                                                                                                                \
    cudaError_t tessera_err_ = (expr);                                                                                \
    if (tessera_err_ != cudaSuccess) {                                                                                \
      std::fprintf(stderr, "%s\n", ::tessera::gpu::cuda_error_text(tessera_err_, #expr, __FILE__, __LINE__).c_str()); \
      std::abort();                                                                                                   \
    }                                                                                                                 \
  } while (0)

#define TESSERA_CUBLAS_CHECK(expr)                                                                                     \
  do {                                                                                                                 \
    cublasStatus_t tessera_st_ = (expr);                                                                               \
    if (tessera_st_ != CUBLAS_STATUS_SUCCESS) {                                                                        \
      std::fprintf(stderr, "%s\n", ::tessera::gpu::cublas_error_text(tessera_st_, #expr, __FILE__, __LINE__).c_str()); \
      std::abort();                                                                                                    \
    }                                                                                                                  \
  } while (0)

// An op entry's status that must be ok (tests, benchmarks).
#define TESSERA_STATUS_CHECK(expr)                                                                           \
  do {                                                                                                       \
    ::tessera::gpu::Status tessera_s_ = (expr);                                                              \
    if (!tessera_s_.ok()) {                                                                                  \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, tessera_s_.message.c_str()); \
      std::abort();                                                                                          \
    }                                                                                                        \
  } while (0)
