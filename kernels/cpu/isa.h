// kernels/cpu/isa.h — which instruction set the CPU kernels run with, chosen at run time by what the CPU and the OS
// grant, and the table of kernels compiled for each one.
//
// The library is built for baseline x86-64 (never -march=native: a binary built on one machine runs on any x86-64
// machine); the SIMD kernels (quant_kernels.h: typed-weight products, int8 products; attention_kernels.h: the
// attention tile) are compiled once more per set by kernels/cpu/isa_<set>.cpp with that set's -m flags:
//   generic     SSE2 (every x86-64)
//   avx2        AVX2 + FMA + F16C
//   avxvnni     avx2 + AVX-VNNI (the VEX-encoded int8 dot product of 256-bit vectors: Alder Lake, Zen 5)
//   avx512      AVX-512 F, BW, VL, DQ
//   avx512vnni  avx512 + AVX512-VNNI (Ice Lake, Sapphire Rapids, Zen 4/5)
// A set is usable when CPUID reports every feature it needs *and* the OS has enabled its register state (XCR0's AVX
// bits; for the AVX-512 sets also the opmask and ZMM bits). The usable sets need not be a prefix of the list (Ice
// Lake has avx512vnni but no avxvnni). The widest usable set runs; $TESSERA_CPU_ISA (one of the names above) caps
// it: the widest usable set at or below the named one. The tests run every usable set.
// AMX is not used (it would need arch_prctl(ARCH_REQ_XCOMP_PERM) first; the VMs here advertise it but fault on it).
// Thread-safety: set_isa() is not synchronized (call it before the ops run).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"

namespace tessera::ops {

enum class Isa { kGeneric, kAvx2, kAvxVnni, kAvx512, kAvx512Vnni };

const char* isa_name(Isa isa);
// Whether this CPU and OS can run the set.
bool isa_supported(Isa isa);
// The widest instruction set this CPU and OS support.
Isa best_isa();
// The one in use: best_isa(), capped by $TESSERA_CPU_ISA at first use or by set_isa().
Isa active_isa();
// Throws tessera::Error when the CPU or the OS lacks it.
void set_isa(Isa isa);
// Every instruction set this machine can run, narrowest first (what the tests iterate over).
std::vector<Isa> supported_isas();

// Keys in blocks (a paged KV cache): see CpuKernels::attend.
struct KvPages {
  const int32_t* blocks = nullptr;
  int64_t block_size = 0, block_stride = 0, first = 0;
};

namespace detail {
// Values per activation scale in the int8 mode: the kernels apply one scale per int32 lane (4 or 2 products), so
// any multiple of 4 that divides 16 costs the same; 4 keeps an outlier from coarsening more than three neighbours.
constexpr int kInt8Group = 4;

// Activation rows quantized to int8 for one instruction set's int8 kernel (quant.h's kInt8 mode): each run of
// kInt8Group values has one scale d = max|x| / 127 and q = nearbyint(x / d). Rows are padded with zeros to kpad
// values (a multiple of the set's int32 vector of products).
struct Int8Rows {
  int8_t* q;     // [m][kpad]
  float* dlane;  // [m][kpad / lane_values]: each int32 lane's scale d (0 in the padding)
  float* sums;   // [m][halves]: d · Σ q over each 16 values (what a weight's offset multiplies), zeros past k / 16
  int64_t m, k, kpad, halves;  // halves: k / 16 rounded up to a multiple of 16
};

// One instruction set's kernels.
struct CpuKernels {
  // quant_kernels.h: y rows [0, m) for weight rows [j0, j1), every weight row decoded once per group of rows of x.
  void (*rows)(const float* x, int64_t m, const Tensor& w, int64_t j0, int64_t j1, float* y, int64_t ldy);
  void (*dequantize)(const Tensor& w, int64_t r0, int64_t r1, float* out);
  // attention_kernels.h: nq query positions of `heads` heads each (head g of position r at q + r · q_stride +
  // g · head_stride, its output likewise at out); position r attends keys [0, n_first + r · step) of k / v (fp32,
  // fp16 or bf16; kv_stride in elements). pages.blocks == nullptr: key j is row j of k / v; else key j is the
  // sequence's position p = pages.first + j: row p % block_size of block pages.blocks[p / block_size], which starts
  // pages.block_stride elements · that block id after k / v.
  void (*attend)(const float* q, int64_t q_stride, const void* k, const void* v, DType kv_type, int64_t kv_stride,
                 const KvPages& pages, int64_t nq, int64_t n_first, int64_t step, int64_t heads, int64_t head_stride,
                 float* out, int64_t out_stride, int64_t head_dim, float scale);
  // The int8 path (quant_kernels.h): one int32 lane sums int8_lane_values products; a vector of lanes covers
  // int8_chunk values (kpad is a multiple of it).
  int64_t int8_chunk, int8_lane_values;
  // Quantizes rows [r0, r1) of x [m, k] into xq.
  void (*quantize)(const float* x, int64_t r0, int64_t r1, const Int8Rows& xq);
  // y rows [0, xq.m) for weight rows [j0, j1) of a block-type w; scratch: int8_scratch_bytes(k) bytes, 64-aligned.
  void (*rows_int8)(const Int8Rows& xq, const Tensor& w, int64_t j0, int64_t j1, float* y, int64_t ldy, void* scratch);
};
extern const CpuKernels kGenericKernels;
extern const CpuKernels kAvx2Kernels;
extern const CpuKernels kAvxVnniKernels;
extern const CpuKernels kAvx512Kernels;
extern const CpuKernels kAvx512VnniKernels;
const CpuKernels& kernels_for(Isa isa);
inline const CpuKernels& active_kernels() { return kernels_for(active_isa()); }
}  // namespace detail

}  // namespace tessera::ops
