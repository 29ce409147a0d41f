// Max pooling's interior row fold built with the AVX-512 flags (see CMakeLists.txt); pool.cpp calls
// it only when the GEMM runs on that instruction set (gemm_isa()).
#define PYDECONV_POOL_FN(name) name##_avx512
#include "../pool_fold.inc"
