// kernels/cpu/isa.h — which instruction set the CPU kernels run with, chosen at run time by what the CPU and the OS
// grant, and the table of kernels compiled for each one.
//
// The library is built for baseline x86-64 (never -march=native: a binary built on one machine runs on any x86-64
// machine); the SIMD kernels (quant_kernels.h: typed-weight products; attention_kernels.h: the attention tile) are
// compiled once more per set by kernels/cpu/isa_<set>.cpp with that set's -m flags: generic (SSE2), AVX2 + FMA +
// F16C, and AVX-512 (F, BW, VL, DQ). The widest set the CPU has *and* the OS has enabled (XCR0's AVX and AVX-512
// state bits) is used; $TESSERA_CPU_ISA (generic | avx2 | avx512) caps it. The tests run every set the machine
// has against the generic one and against float64 references.
// Thread-safety: set_isa() is not synchronized (call it before the ops run).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"

namespace tessera::ops {

enum class Isa { kGeneric, kAvx2, kAvx512 };

const char* isa_name(Isa isa);
// The widest instruction set this CPU and OS support.
Isa best_isa();
// The one in use: best_isa(), capped by $TESSERA_CPU_ISA at first use or by set_isa().
Isa active_isa();
// Throws tessera::Error when the CPU or the OS lacks it.
void set_isa(Isa isa);
// Every instruction set this machine can run, narrowest first (what the tests iterate over).
std::vector<Isa> supported_isas();

namespace detail {
// One instruction set's kernels.
struct CpuKernels {
  // quant_kernels.h: y rows [0, m) for weight rows [j0, j1), every weight row decoded once per group of rows of x.
  void (*rows)(const float* x, int64_t m, const Tensor& w, int64_t j0, int64_t j1, float* y, int64_t ldy);
  void (*dequantize)(const Tensor& w, int64_t r0, int64_t r1, float* out);
  // attention_kernels.h: nq queries; query r attends keys [0, n_first + r · step) of k / v (fp32, fp16 or bf16;
  // kv_stride in elements).
  void (*attend)(const float* q, int64_t q_stride, const void* k, const void* v, DType kv_type, int64_t kv_stride,
                 int64_t nq, int64_t n_first, int64_t step, float* out, int64_t out_stride, int64_t head_dim,
                 float scale);
};
extern const CpuKernels kGenericKernels;
extern const CpuKernels kAvx2Kernels;
extern const CpuKernels kAvx512Kernels;
const CpuKernels& kernels_for(Isa isa);
inline const CpuKernels& active_kernels() { return kernels_for(active_isa()); }
}  // namespace detail

}  // namespace tessera::ops
