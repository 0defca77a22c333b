// kernels/cpu/isa.cpp — see isa.h: which instruction sets this CPU and OS grant (CPUID and XCR0), and which runs.
#include "kernels/cpu/isa.h"

#include <cpuid.h>

#include <cstdlib>
#include <string>

#include "common/check.h"

namespace tessera::ops {
namespace {

constexpr Isa kAll[] = {Isa::kGeneric, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAvx512Vnni};

uint64_t xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

struct Features {
  bool avx2 = false, avxvnni = false, avx512 = false, avx512vnni = false;
};

Features detect() {
  Features f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid(1, a, b, c, d);
  const bool osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
  if (!osxsave || !avx) return f;
  const uint64_t x = xcr0();
  const bool os_avx = (x & 0x6) == 0x6;       // SSE and AVX state
  const bool os_avx512 = (x & 0xe6) == 0xe6;  // and opmask, ZMM_Hi256, Hi16_ZMM
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
             avx512vl = (b >> 31) & 1, avx512vnni = (c >> 11) & 1;
  const unsigned max_sub = a;
  bool avxvnni = false;
  if (max_sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    avxvnni = (a >> 4) & 1;
  }
  f.avx2 = os_avx && avx2 && fma && f16c;
  f.avxvnni = f.avx2 && avxvnni;
  f.avx512 = f.avx2 && os_avx512 && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512vnni = f.avx512 && avx512vnni;
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}

Isa parse_isa(const std::string& s) {
  for (Isa i : kAll)
    if (s == isa_name(i)) return i;
  throw Error("$TESSERA_CPU_ISA: unknown instruction set '" + s +
              "' (expected generic, avx2, avxvnni, avx512 or avx512vnni)");
}

// The widest usable set at or below `cap`.
Isa capped(Isa cap) {
  Isa best = Isa::kGeneric;
  for (Isa i : kAll)
    if (static_cast<int>(i) <= static_cast<int>(cap) && isa_supported(i)) best = i;
  return best;
}

Isa initial_isa() {
  const char* env = std::getenv("TESSERA_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  return capped(parse_isa(env));  // a cap, never more than the CPU has
}

Isa& current() {
  static Isa isa = initial_isa();
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kGeneric:
      return "generic";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvxVnni:
      return "avxvnni";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Vnni:
      return "avx512vnni";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  const Features& f = features();
  switch (isa) {
    case Isa::kGeneric:
      return true;
    case Isa::kAvx2:
      return f.avx2;
    case Isa::kAvxVnni:
      return f.avxvnni;
    case Isa::kAvx512:
      return f.avx512;
    case Isa::kAvx512Vnni:
      return f.avx512vnni;
  }
  return false;
}

Isa best_isa() {
  static const Isa best = capped(Isa::kAvx512Vnni);
  return best;
}

Isa active_isa() { return current(); }

void set_isa(Isa isa) {
  if (!isa_supported(isa))
    throw Error(std::string("cpu: instruction set ") + isa_name(isa) +
                " is not available here (best: " + isa_name(best_isa()) + ")");
  current() = isa;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (Isa i : kAll)
    if (isa_supported(i)) v.push_back(i);
  return v;
}

const detail::CpuKernels& detail::kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512Vnni:
      return kAvx512VnniKernels;
    case Isa::kAvx512:
      return kAvx512Kernels;
    case Isa::kAvxVnni:
      return kAvxVnniKernels;
    case Isa::kAvx2:
      return kAvx2Kernels;
    case Isa::kGeneric:
      break;
  }
  return kGenericKernels;
}

}  // namespace tessera::ops
