// kernels/cpu/quant.h — matrix products and row reads on weights in their file's type (fp32, fp16, bf16 and
// GGML's block types), with SIMD kernels chosen at run time by what the CPU and the OS grant.
//
// Block layouts (little-endian; d, m are fp16; a "group" is 32 consecutive values of a row):
//   Q8_0 (32 values, 34 B)  {d; int8 q[32]}                 x = d·q
//   Q4_0 (32 values, 18 B)  {d; uint8 qs[16]}               x[j] = d·((qs[j] & 15) − 8), x[j+16] = d·((qs[j] >> 4) − 8)
//   Q4_1 (32 values, 20 B)  {d; m; uint8 qs[16]}            x[j] = d·(qs[j] & 15) + m,   x[j+16] = d·(qs[j] >> 4) + m
//   Q4_K (256 values, 144 B) {d; dmin; uint8 scales[12]; uint8 qs[128]}: 8 groups, each with a 6-bit scale sc and
//        min mn packed in `scales`; group j's 4-bit values are the low (j even) or high (j odd) nibbles of
//        qs[32·(j/2) …]: x = d·sc·q − dmin·mn
//   Q6_K (256 values, 210 B) {uint8 ql[128]; uint8 qh[64]; int8 scales[16]; d}: 6-bit q from a nibble of ql and
//        two bits of qh, one int8 scale per 16 values: x = d·sc·(q − 32)
// The dequantized values are exactly those of formats/dequant.h (tests/kernels/test_quant.cpp checks it).
//
// Activations (Activations::kF32, the default): fp32 x against the exact dequantized weights, fp32 accumulation.
// Activations::kInt8 (the approximate mode, block-type weights only; what llama.cpp does): each run of 4 values of a
// row of x (isa.h's kInt8Group) is quantized to int8 with its own scale, d = max|x| / 127, q = nearbyint(x / d) (fp32
// arithmetic), and every weight group is read as unsigned bytes u with a scale a and an offset b per 16 values (w = a·u
// + b: Q8_0 u = q + 128, b = −128·d; Q4_0 b = −8·d; Q4_1 b = m; Q4_K a = d·sc, b = −dmin·mn; Q6_K b = −32·a). The
// products u·q are summed exactly in int32 (VNNI's vpdpbusd where the CPU has it), then
// y = Σ a·d_x·Σ(u·q) + Σ b·d_x·Σq in fp32. Float-type weights keep the fp32 path in either mode.
//
// Instruction sets: kernels/cpu/isa.h.
// Thread-safety: reentrant.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/tensor.h"

namespace tessera::ops {

enum class Activations { kF32, kInt8 };
const char* activations_name(Activations a);  // "fp32" | "int8"

// y[m, n] (row stride ldy) = x[m, k] · wᵀ (+ bias[n]) for w [n, k] of any DType (k = w.cols; a block type's k is a
// multiple of its block size). fp32 x and y. kF32: few rows (decode batches) read each weight row once for all
// rows of x; many rows (prefill) dequantize panels of w and run OpenBLAS's sgemm where it is installed. kInt8 (block
// types): x quantized once, then every weight row is decoded to bytes once per 64 rows of x and dotted with them.
void linear_typed(const float* x, int64_t m, const Tensor& w, const float* bias, float* y, int64_t ldy,
                  Activations act = Activations::kF32);
// The OpenBLAS core type this process should ask for ($OPENBLAS_CORETYPE, read when the library loads), or null
// when its own choice is right: OpenBLAS 0.3.21 does not know AMD Zen 4/5 and runs its AVX2 (Haswell) sgemm there,
// while its AVX-512 (SkylakeX) kernels measure 1.6x faster on those CPUs (docs/cpu-kernels.md).
const char* preferred_openblas_core();
// Rows [r0, r1) of w as fp32, dense [r1 − r0, w.cols].
void dequantize_rows(const Tensor& w, int64_t r0, int64_t r1, float* out);

}  // namespace tessera::ops
