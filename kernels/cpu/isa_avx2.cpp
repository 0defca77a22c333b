// kernels/cpu/isa_avx2.cpp — the SIMD kernels compiled for avx2 (flags in kernels/CMakeLists.txt; see isa.h).
#include "kernels/cpu/attention_kernels.h"
#include "kernels/cpu/quant_kernels.h"

namespace tessera::ops {
const detail::CpuKernels detail::kAvx2Kernels = TESSERA_CPU_KERNELS;
}  // namespace tessera::ops
