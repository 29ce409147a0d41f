// pydeconv: runtime CPU feature detection with cpuid + xgetbv (the ISA setting and the kernel
// tables it picks: settings.cpp, dispatch.cpp).
#include "cpu.hpp"

#if PYDECONV_X86
#include <cpuid.h>
#endif

namespace pydeconv::kernels {

#if PYDECONV_X86
namespace {

// XCR0 via inline asm: the _xgetbv intrinsic would need -mxsave on this (baseline) file.
unsigned long long read_xcr0() {
  unsigned int eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

bool detect_avx2_fma() {
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const bool fma = (ecx >> 12) & 1u;
  const bool osxsave = (ecx >> 27) & 1u;  // xgetbv is usable
  const bool avx = (ecx >> 28) & 1u;
  if (!(fma && osxsave && avx)) return false;
  if ((read_xcr0() & 0x6) != 0x6) return false;  // OS does not save xmm+ymm state
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  return (ebx >> 5) & 1u;  // AVX2
}

// Our AVX-512 kernels also use FMA3 ymm code paths around them, hence the AVX2 check first.
bool detect_avx512f() {
  if (!detect_avx2_fma()) return false;
  if ((read_xcr0() & 0xE6) != 0xE6) return false;  // OS does not save opmask + zmm state
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  return (ebx >> 16) & 1u;  // AVX-512F
}

}  // namespace

bool cpu_has_avx2_fma() {
  static const bool has = detect_avx2_fma();  // thread-safe one-time initialisation
  return has;
}

bool cpu_has_avx512f() {
  static const bool has = detect_avx512f();
  return has;
}
#else
bool cpu_has_avx2_fma() { return false; }
bool cpu_has_avx512f() { return false; }
#endif

}  // namespace pydeconv::kernels
