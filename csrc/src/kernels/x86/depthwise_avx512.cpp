// pydeconv: the depthwise convolution's forward plane kernels (depthwise_fwd.inc) built for
// AVX-512 (16 lanes); the avx512 kernel table holds them.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../dispatch.hpp"
#include "../kernels.hpp"

namespace pydeconv::kernels {

#define PYDECONV_DW_FOR depthwise_plane_for_avx512
#include "../depthwise_fwd.inc"
#undef PYDECONV_DW_FOR

}  // namespace pydeconv::kernels
