// pydeconv: what the CPU we run on can do, asked once at run time (never -march=native).
#pragma once

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define PYDECONV_X86 1
#else
#define PYDECONV_X86 0
#endif

namespace pydeconv::kernels {

// True when the CPU has AVX2 and FMA *and* the OS saves ymm state on context switches
// (XCR0 bits 1 and 2): only then may the x86/ AVX2 kernels run. Always false off x86.
bool cpu_has_avx2_fma();

}  // namespace pydeconv::kernels
