// pydeconv: the exp-based activations' forward rows (act_rows.inc) built for AVX2 + FMA (8 lanes);
// the avx2 kernel table holds it.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

namespace pydeconv::kernels {

#define PYDECONV_ACT_ROWS act_exp_rows_avx2
#include "../act_rows.inc"
#undef PYDECONV_ACT_ROWS

}  // namespace pydeconv::kernels
