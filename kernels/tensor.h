// kernels/tensor.h — what an op of the backend interface (kernels/backend.h) reads and writes: a 2-D view of
// backend memory with its element type and shape.
//
// A Tensor does not own memory: `data` points into the backend's memory (host memory on the CPU, device memory on
// CUDA). Shapes are [rows, cols], row-major, `stride` elements between row starts (>= cols; a column slice of a
// wider matrix — Q, K and V of one fused projection — keeps the parent's stride). Weights follow nn.Linear's
// [out_features, in_features]. Element types: F32, F16 and BF16 today; the quantized block types (GGUF's Q4_1,
// Q8_0, …) join this enum, with their block size and bytes per block, without changing the ops' signatures.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tessera::ops {

enum class DType { F32, F16, BF16 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::F32 ? "f32" : t == DType::F16 ? "f16" : "bf16"; }

struct Tensor {
  void* data = nullptr;  // nullptr: absent (an optional bias, GPT-2's wpe on Llama)
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0, stride = 0;

  static Tensor dense(void* data, DType dtype, int64_t rows, int64_t cols) {
    return Tensor{data, dtype, rows, cols, cols};
  }
  static Tensor dense(const void* data, DType dtype, int64_t rows, int64_t cols) {
    return dense(const_cast<void*>(data), dtype, rows, cols);
  }
  bool empty() const { return data == nullptr; }
  bool contiguous() const { return stride == cols; }
  int64_t numel() const { return rows * cols; }
  // Element (r, c) as a typed pointer (F32 tensors on the host) or as bytes.
  template <typename T>
  T* at(int64_t r = 0, int64_t c = 0) const {
    return reinterpret_cast<T*>(byte_at(r, c));
  }
  char* byte_at(int64_t r, int64_t c) const {
    return static_cast<char*>(data) + static_cast<size_t>(r * stride + c) * dtype_size(dtype);
  }
  // Columns [c0, c0 + n) of every row (same stride): Q, K or V of a fused [q|k|v] row.
  Tensor cols_from(int64_t c0, int64_t n) const { return Tensor{byte_at(0, c0), dtype, rows, n, stride}; }
  // Rows [r0, r0 + n).
  Tensor rows_from(int64_t r0, int64_t n) const { return Tensor{byte_at(r0, 0), dtype, n, cols, stride}; }
};

}  // namespace tessera::ops
