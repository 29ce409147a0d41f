// Max pooling's interior row fold built with the AVX2 flags (see CMakeLists.txt); the AVX2 kernel
// table holds it (dispatch.hpp).
#define PYDECONV_POOL_FN(name) name##_avx2
#include "../pool_fold.inc"
