// pydeconv: the reference SGEMM, a plain triple loop accumulating in double. It defines what
// sgemm must compute and is what PYDECONV_REFERENCE=1 runs.
#include "kernels/gemm.hpp"

namespace pydeconv::kernels {

void sgemm_ref(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
               int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = accumulate ? static_cast<double>(c[i * ldc + j]) : 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const float av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        sum += static_cast<double>(av) * static_cast<double>(bv);
      }
      c[i * ldc + j] = static_cast<float>(sum);
    }
  }
}

}  // namespace pydeconv::kernels
