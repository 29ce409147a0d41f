// pydeconv: the matrix-vector product of linear layers at batch 1-2, on AVX-512 (built with
// -mavx512f ...; the AVX-512 kernel table holds it).
//
// out[r] = sum_p x[p] w[r k + p] for rows r in [0, rows). One zmm accumulator per row: lane l sums
// the products p = l mod 16 in ascending p with FMAs; the lanes then combine by halving (l += l+8,
// +4, +2, +1) and the k mod 16 tail products, summed in order, are added last. That is exactly
// what the AVX2 kernel computes (two ymm per row), so the two give the same bits, and a row's
// result does not depend on its group or on the thread count.
// Four rows share each load of x and keep four weight streams in flight: 37 GB/s on 2 threads of
// this machine's Xeon for fc6 (4096 x 9216), against 16-20 GB/s for the compiler-vectorised loop.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace pydeconv::kernels {

#include "gemv_combine.inc"

namespace {

float finish(__m512 acc, const float* x, const float* w, int64_t p, int64_t k) {
  alignas(64) float lane[16];
  _mm512_store_ps(lane, acc);
  return combine16(lane, x, w, p, k);
}

template <int R>
void rows_dot(const float* x, const float* w, int64_t k, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    const __m512 xv = _mm512_loadu_ps(x + p);
    for (int r = 0; r < R; ++r) {
      prefetch_ahead(w + r * k + p);
      acc[r] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w + r * k + p), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = finish(acc[r], x, w + r * k, p, k);
}

}  // namespace

void gemv_rows_avx512(const float* x, const float* w, int64_t k, int64_t rows, float* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) rows_dot<4>(x, w + r * k, k, out + r);
  for (; r < rows; ++r) rows_dot<1>(x, w + r * k, k, out + r);
}

}  // namespace pydeconv::kernels
