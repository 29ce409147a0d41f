// pydeconv: the exp-based activations' forward rows (act_rows.inc) built for AVX-512 (16 lanes);
// the avx512 kernel table holds it.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

namespace pydeconv::kernels {

#define PYDECONV_ACT_ROWS act_exp_rows_avx512
#include "../act_rows.inc"
#undef PYDECONV_ACT_ROWS

}  // namespace pydeconv::kernels
