// Max pooling's interior row fold built with the AVX-512 flags (see CMakeLists.txt); the AVX-512
// kernel table holds it (dispatch.hpp).
#define PYDECONV_POOL_FN(name) name##_avx512
#include "../pool_fold.inc"
