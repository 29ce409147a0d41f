// The Winograd F(2x2, 3x3) and F(4x4, 3x3) transform loops built with the AVX-512 flags (see
// CMakeLists.txt); the AVX-512 kernel table holds them (dispatch.hpp).
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's own AVX-512 shuffle intrinsics pass _mm512_undefined_ps() through, which its
// -Wmaybe-uninitialized reports at every use (GCC bug 105593); nothing here reads undefined data.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define PYDECONV_WINO_FN(name) name##_avx512
#include "../winograd_kernels.inc"
