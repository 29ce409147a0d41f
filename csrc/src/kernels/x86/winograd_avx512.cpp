// The Winograd F(2x2, 3x3) and F(4x4, 3x3) transform loops built with the AVX-512 flags (see CMakeLists.txt);
// winograd.cpp calls them only when the GEMM runs on that instruction set (gemm_isa()).
#define PYDECONV_WINO_FN(name) name##_avx512
#include "../winograd_kernels.inc"
