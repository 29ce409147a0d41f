// pydeconv: LRN's d^-0.75 eight (float) or four (double) at a time. Compiled with -mavx2 -mfma;
// the AVX2 and AVX-512 kernel tables hold them. The portable loops cannot vectorise: std::sqrt
// may set errno, so the compiler keeps it scalar. Conversion, sqrt, multiply and divide are all
// correctly rounded in both, so the results are bit-identical to the portable loops in lrn.cpp.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace pydeconv::kernels {

// r[i] = 1 / sqrt(v sqrt(v)) with v = float(d[i]).
void lrn_inv_pow075_avx2(const double* d, int64_t m, float* r) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= m; i += 8) {
    const __m128 lo = _mm256_cvtpd_ps(_mm256_loadu_pd(d + i));
    const __m128 hi = _mm256_cvtpd_ps(_mm256_loadu_pd(d + i + 4));
    const __m256 v = _mm256_set_m128(hi, lo);
    const __m256 q = _mm256_sqrt_ps(_mm256_mul_ps(v, _mm256_sqrt_ps(v)));
    _mm256_storeu_ps(r + i, _mm256_div_ps(one, q));
  }
  for (; i < m; ++i) {
    const float v = static_cast<float>(d[i]);
    r[i] = 1.0f / std::sqrt(v * std::sqrt(v));
  }
}

// r[i] = 1 / sqrt(d[i] sqrt(d[i])) in double.
void lrn_inv_pow075_avx2(const double* d, int64_t m, double* r) {
  const __m256d one = _mm256_set1_pd(1.0);
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    const __m256d v = _mm256_loadu_pd(d + i);
    const __m256d q = _mm256_sqrt_pd(_mm256_mul_pd(v, _mm256_sqrt_pd(v)));
    _mm256_storeu_pd(r + i, _mm256_div_pd(one, q));
  }
  for (; i < m; ++i) r[i] = 1.0 / std::sqrt(d[i] * std::sqrt(d[i]));
}

}  // namespace pydeconv::kernels
