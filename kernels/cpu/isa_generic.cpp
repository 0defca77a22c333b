// kernels/cpu/isa_generic.cpp — the SIMD kernels compiled for generic (flags in kernels/CMakeLists.txt; see isa.h).
#include "kernels/cpu/attention_kernels.h"
#include "kernels/cpu/quant_kernels.h"

namespace tessera::ops {
const detail::CpuKernels detail::kGenericKernels = TESSERA_CPU_KERNELS;
}  // namespace tessera::ops
