// pydeconv: the matrix-vector product of linear layers at batch 1-2, on AVX2 + FMA (built with
// -mavx2 -mfma; the AVX2 kernel table holds it).
//
// The same arithmetic as x86/gemv_avx512.cpp, with a row's 16 lanes in two ymm accumulators
// (lanes 0-7 and 8-15) and the same scalar combine. The two kernels therefore give the same bits.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace pydeconv::kernels {

#include "gemv_combine.inc"

namespace {

float finish(__m256 lo, __m256 hi, const float* x, const float* w, int64_t p, int64_t k) {
  alignas(32) float lane[16];
  _mm256_store_ps(lane, lo);
  _mm256_store_ps(lane + 8, hi);
  return combine16(lane, x, w, p, k);
}

template <int R>
void rows_dot(const float* x, const float* w, int64_t k, float* out) {
  __m256 lo[R], hi[R];
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + p), x1 = _mm256_loadu_ps(x + p + 8);
    for (int r = 0; r < R; ++r) {
      prefetch_ahead(w + r * k + p);
      lo[r] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(w + r * k + p), lo[r]);
      hi[r] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(w + r * k + p + 8), hi[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = finish(lo[r], hi[r], x, w + r * k, p, k);
}

}  // namespace

void gemv_rows_avx2(const float* x, const float* w, int64_t k, int64_t rows, float* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) rows_dot<4>(x, w + r * k, k, out + r);
  for (; r < rows; ++r) rows_dot<1>(x, w + r * k, k, out + r);
}

}  // namespace pydeconv::kernels
