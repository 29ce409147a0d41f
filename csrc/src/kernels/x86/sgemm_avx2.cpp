// pydeconv: the AVX2/FMA SGEMM micro-kernel (intrinsics live only under kernels/x86/).
// This file is compiled with -mavx2 -mfma; gemm.cpp calls it only when cpu_has_avx2_fma().
//
// C[6 x 16] (+)= Apanel[6 x kc] * Bpanel[kc x 16] from packed panels:
//   a: for each p, the 6 values of column p of the A tile (a[p*6 + i]);
//   b: for each p, the 16 values of row p of the B tile (b[p*16 + j]), 32-byte aligned.
// Twelve ymm accumulators (6 rows x 2 halves of 16 columns) + 2 for B + 1 broadcast fit in the
// 16 ymm registers; each k step issues 12 independent FMAs against 2 loads and 6 broadcasts,
// enough independent chains to cover FMA latency on two FMA ports.
// Each C element is summed over p in order 0..kc-1 by one FMA chain, then added to C once:
// the order is fixed, so results do not depend on how the driver tiles or threads the work.
#include <immintrin.h>

#include <cstdint>

namespace pydeconv::kernels {

void sgemm_ukernel_6x16_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

  // Touch the C tile early so its lines arrive while the k loop runs.
  for (int i = 0; i < 6; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 15), _MM_HINT_T0);
  }

#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(ai, b0, c00);
    c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10);
    c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20);
    c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30);
    c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40);
    c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50);
    c51 = _mm256_fmadd_ps(ai, b1, c51);
    a += 6;
    b += 16;
  }

  // Write one row: C = acc, or C = C + acc (a single rounding on top of the chain).
  auto store_row = [&](float* row, __m256 lo, __m256 hi) {
    if (accumulate) {
      lo = _mm256_add_ps(_mm256_loadu_ps(row), lo);
      hi = _mm256_add_ps(_mm256_loadu_ps(row + 8), hi);
    }
    _mm256_storeu_ps(row, lo);
    _mm256_storeu_ps(row + 8, hi);
  };
  store_row(c + 0 * ldc, c00, c01);
  store_row(c + 1 * ldc, c10, c11);
  store_row(c + 2 * ldc, c20, c21);
  store_row(c + 3 * ldc, c30, c31);
  store_row(c + 4 * ldc, c40, c41);
  store_row(c + 5 * ldc, c50, c51);
}

}  // namespace pydeconv::kernels
