// kernels/tensor.h — what an op of the backend interface (kernels/backend.h) reads and writes: a 2-D view of
// backend memory with its element type and shape.
//
// A Tensor does not own memory: `data` points into the backend's memory (host memory on the CPU, device memory on
// CUDA). Shapes are [rows, cols], row-major, `stride` elements between row starts (>= cols; a column slice of a
// wider matrix — Q, K and V of one fused projection — keeps the parent's stride). Weights follow nn.Linear's
// [out_features, in_features]. Element types: F32, F16, BF16 and GGML's block types (a block of block_size(t)
// consecutive values of one row in block_bytes(t) bytes; see kernels/cpu/quant.h for each layout): a tensor of a
// block type has cols and stride that are multiples of the block size, and its columns are addressed in whole
// blocks. Only weights have block types (the CPU backend reads them in place; CUDA uploads them dequantized).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tessera::ops {

enum class DType { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K };

// Values per block and bytes per block (1 and the element size for F32, F16, BF16).
constexpr int64_t block_size(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return 1;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
      return 32;
    case DType::Q4_K:
    case DType::Q6_K:
      return 256;
  }
  return 1;
}
constexpr int64_t block_bytes(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F16:
    case DType::BF16:
      return 2;
    case DType::Q8_0:
      return 34;
    case DType::Q4_0:
      return 18;
    case DType::Q4_1:
      return 20;
    case DType::Q4_K:
      return 144;
    case DType::Q6_K:
      return 210;
  }
  return 4;
}
constexpr bool is_block_type(DType t) { return block_size(t) > 1; }
// Bytes per element of F32, F16 and BF16 (the types activations, caches and CUDA weights take).
inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
// Bytes of n values (n a multiple of the block size).
constexpr size_t dtype_nbytes(DType t, int64_t n) { return static_cast<size_t>(n / block_size(t) * block_bytes(t)); }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
    case DType::Q8_0:
      return "q8_0";
    case DType::Q4_0:
      return "q4_0";
    case DType::Q4_1:
      return "q4_1";
    case DType::Q4_K:
      return "q4_k";
    case DType::Q6_K:
      return "q6_k";
  }
  return "?";
}

struct Tensor {
  void* data = nullptr;  // nullptr: absent (an optional bias, GPT-2's wpe on Llama)
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0, stride = 0;
  // Stored transposed: element (r, c) at (c · stride + r) elements from data. Only fp32 weights of the CPU
  // backend's linear() (GPT-2's Conv1D weights, [in, out] in the file, read in place); every other op refuses it.
  bool transposed = false;

  static Tensor dense(void* data, DType dtype, int64_t rows, int64_t cols) {
    return Tensor{data, dtype, rows, cols, cols};
  }
  static Tensor dense(const void* data, DType dtype, int64_t rows, int64_t cols) {
    return dense(const_cast<void*>(data), dtype, rows, cols);
  }
  bool empty() const { return data == nullptr; }
  bool contiguous() const { return !transposed && stride == cols; }
  int64_t numel() const { return rows * cols; }
  // Element (r, c) as a typed pointer (F32 tensors on the host) or as bytes.
  template <typename T>
  T* at(int64_t r = 0, int64_t c = 0) const {
    return reinterpret_cast<T*>(byte_at(r, c));
  }
  // For a block type, c is a multiple of the block size.
  char* byte_at(int64_t r, int64_t c) const { return static_cast<char*>(data) + dtype_nbytes(dtype, r * stride + c); }
  size_t row_bytes() const { return dtype_nbytes(dtype, cols); }
  // Columns [c0, c0 + n) of every row (same stride): Q, K or V of a fused [q|k|v] row.
  Tensor cols_from(int64_t c0, int64_t n) const { return Tensor{byte_at(0, c0), dtype, rows, n, stride}; }
  // Rows [r0, r0 + n).
  Tensor rows_from(int64_t r0, int64_t n) const { return Tensor{byte_at(r0, 0), dtype, n, cols, stride}; }
};

}  // namespace tessera::ops
