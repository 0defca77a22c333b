// formats/dequant.h — reference dequantizers for the storage types of tensor_source.h.
//
// In:  raw little-endian bytes of F32, F16, BF16 values or GGML blocks of 32 values:
//        Q8_0 = {fp16 d; int8 qs[32]}            x[j] = d * qs[j]
//        Q4_0 = {fp16 d; uint8 qs[16]}           x[j] = d * ((qs[j] & 0xF) - 8), x[j+16] = d * ((qs[j] >> 4) - 8)
//        Q4_1 = {fp16 d; fp16 m; uint8 qs[16]}   x[j] = d * (qs[j] & 0xF) + m,   x[j+16] = d * (qs[j] >> 4) + m
//      or GGML K-quant super-blocks of 256 values (8 sub-blocks of 32 for Q4_K, 16 of 16 for Q6_K):
//        Q4_K = {fp16 d; fp16 dmin; uint8 scales[12]; uint8 qs[128]}                               (144 bytes)
//               sub-block j (values 32j..32j+31) has 6-bit scale sc_j and min m_j (q4k_scale_min); its quants
//               sit in qs[32*(j/2) + l] (l in 0..31), low nibble for even j, high nibble for odd j;
//               x = (d * sc_j) * q - (dmin * m_j)
//        Q6_K = {uint8 ql[128]; uint8 qh[64]; int8 scales[16]; fp16 d}                              (210 bytes)
//               value v = 128h + 32k + l (h in 0..1, k in 0..3, l in 0..31) has the 6-bit quant
//               q = (ql[64h + 32(k&1) + l] >> 4(k>>1) & 0xF) | (qh[32h + l] >> 2k & 3) << 4;
//               x = (d * scales[v/16]) * (q - 32)
//      Every product and difference is rounded to fp32 in the order written (no fused multiply-add).
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

// Unpacks the 6-bit scale and min of sub-block j (0..7) from the 12 packed scale bytes of a Q4_K super-block
// (also the layout of Q5_K). For j < 4: sc = scales12[j] & 63, m = scales12[j+4] & 63; for j >= 4 the low 4 bits
// come from scales12[j+4] (scale: low nibble, min: high nibble) and the top 2 bits from bits 6..7 of
// scales12[j-4] (scale) and scales12[j] (min). Same as ggml's get_scale_min_k4. *sc and *m are in 0..63.
void q4k_scale_min(const uint8_t* scales12, int j, uint8_t* sc, uint8_t* m);

// n = number of values (a multiple of dtype_block_size(type): 32 for Q8_0/Q4_0/Q4_1, 256 for Q4_K/Q6_K); src holds n
// values' worth of bytes (dtype_nbytes(type, n)).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// Values [begin, end) of a tensor whose storage starts at `tensor_data` (blocks counted from value 0);
// begin/end need not be block-aligned: partial blocks at either edge are decoded and trimmed.
void dequantize_range(DType type, const void* tensor_data, int64_t begin, int64_t end, float* dst);

}  // namespace tessera::formats
