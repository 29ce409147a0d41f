// pydeconv: what the CPU we run on can do, asked once at run time (never -march=native); the
// kernel tables (dispatch.hpp) are chosen by it.
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

// True when the CPU has AVX-512F (plus AVX2/FMA) *and* the OS saves the full zmm state
// (XCR0 bits 1, 2, 5, 6, 7: xmm, ymm, opmask, upper zmm0-15, zmm16-31): only then may the x86/
// AVX-512 kernels run. Always false off x86.
bool cpu_has_avx512f();

}  // namespace pydeconv::kernels
