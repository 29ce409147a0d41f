// pydeconv: runtime CPU feature detection with cpuid + xgetbv, and the SGEMM ISA switch
// (sgemm_isa / sgemm_force_isa / sgemm_force_portable from pydeconv/gemm.hpp).
#include "cpu.hpp"

#include <atomic>
#include <string>

#include "pydeconv/error.hpp"
#include "kernels/gemm.hpp"

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

namespace {

// The forced GemmIsa as an int, or kAuto when none is forced (then the best one available).
constexpr int kAuto = -1;
std::atomic<int> g_forced{kAuto};

bool has(GemmIsa isa) {
  if (isa == GemmIsa::Avx512) return cpu_has_avx512f();
  return isa == GemmIsa::Avx2 ? cpu_has_avx2_fma() : true;
}

}  // namespace

GemmIsa gemm_isa() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced != kAuto) return static_cast<GemmIsa>(forced);
  if (has(GemmIsa::Avx512)) return GemmIsa::Avx512;
  return has(GemmIsa::Avx2) ? GemmIsa::Avx2 : GemmIsa::Portable;
}

const char* sgemm_isa() {
  const GemmIsa isa = gemm_isa();
  if (isa == GemmIsa::Avx512) return "avx512_24x16";
  return isa == GemmIsa::Avx2 ? "avx2_fma_6x16" : "portable";
}

void sgemm_force_portable(bool on) {
  g_forced.store(on ? static_cast<int>(GemmIsa::Portable) : kAuto, std::memory_order_relaxed);
}

void sgemm_force_isa(const char* isa) {
  const std::string name = isa != nullptr ? isa : "";
  if (name == "auto") {
    g_forced.store(kAuto, std::memory_order_relaxed);
    return;
  }
  GemmIsa want = GemmIsa::Portable;
  if (name == "avx2") {
    want = GemmIsa::Avx2;
  } else if (name == "avx512") {
    want = GemmIsa::Avx512;
  } else if (name != "portable") {
    fail(ErrorKind::Value,
         "sgemm_force_isa: unknown ISA '" + name + "' (portable, avx2, avx512 or auto)");
  }
  if (!has(want)) fail(ErrorKind::Value, "sgemm_force_isa: this CPU cannot run " + name);
  g_forced.store(static_cast<int>(want), std::memory_order_relaxed);
}

}  // namespace pydeconv::kernels
