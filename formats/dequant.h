// formats/dequant.h — reference dequantizers for the storage types of tensor_source.h.
//
// In:  raw little-endian bytes of F32, F16, BF16 values or GGML blocks of 32 values:
//        Q8_0 = {fp16 d; int8 qs[32]}            x[j] = d * qs[j]
//        Q4_0 = {fp16 d; uint8 qs[16]}           x[j] = d * ((qs[j] & 0xF) - 8), x[j+16] = d * ((qs[j] >> 4) - 8)
//        Q4_1 = {fp16 d; fp16 m; uint8 qs[16]}   x[j] = d * (qs[j] & 0xF) + m,   x[j+16] = d * (qs[j] >> 4) + m
// Out: fp32 values, bit-identical to the PyPI `gguf` package's gguf.quants.dequantize (checked by
//      tests/formats/test_quant_fixtures.cpp against fixtures it writes). Also the reference for GPU kernels.
// Guarantees: sources may be unaligned (bytes are copied, never type-punned); no allocation.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "formats/tensor_source.h"

namespace tessera::formats {

float fp16_to_fp32(uint16_t bits);  // exact, incl. subnormals, inf, nan
float bf16_to_fp32(uint16_t bits);  // exact

// n = number of values (a multiple of 32 for Q types); src holds n values' worth of bytes (dtype_nbytes(type, n)).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// Values [begin, end) of a tensor whose storage starts at `tensor_data` (blocks counted from value 0);
// begin/end need not be block-aligned: partial blocks at either edge are decoded and trimmed.
void dequantize_range(DType type, const void* tensor_data, int64_t begin, int64_t end, float* dst);

}  // namespace tessera::formats
