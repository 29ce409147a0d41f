// The Winograd F(2x2, 3x3) and F(4x4, 3x3) transform loops built with the AVX2/FMA flags (see
// CMakeLists.txt); the AVX2 kernel table holds them (dispatch.hpp).
#define PYDECONV_WINO_FN(name) name##_avx2
#include "../winograd_kernels.inc"
