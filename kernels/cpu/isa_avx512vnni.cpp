// kernels/cpu/isa_avx512vnni.cpp — the SIMD kernels compiled for avx512vnni (flags in kernels/CMakeLists.txt; see
// isa.h).
#include "kernels/cpu/attention_kernels.h"
#include "kernels/cpu/quant_kernels.h"

namespace tessera::ops {
const detail::CpuKernels detail::kAvx512VnniKernels = TESSERA_CPU_KERNELS;
}  // namespace tessera::ops
