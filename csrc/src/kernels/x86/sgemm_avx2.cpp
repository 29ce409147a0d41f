// pydeconv: the AVX2/FMA SGEMM micro-kernel (intrinsics live only under kernels/x86/).
// This file is compiled with -mavx2 -mfma; the AVX2 and AVX-512 kernel tables hold it.
//
// C[6 x 16] (+)= Apanel[6 x kc] * Bpanel[kc x 16] from packed panels:
//   a: for each p, the 6 values of column p of the A tile (a[p*6 + i]);
//   b: for each p, the 16 values of row p of the B tile (b[p*16 + j]), 32-byte aligned.
// Twelve ymm accumulators (6 rows x 2 halves of 16 columns) + 2 for B + 1 broadcast fit in the
// 16 ymm registers; each k step issues 12 independent FMAs against 2 loads and 6 broadcasts,
// enough independent chains to cover FMA latency on two FMA ports.
// Each C element is summed over p in order 0..kc-1 by one FMA chain, then added to C once:
// the order is fixed, so results do not depend on how the driver tiles or threads the work.
// The tile's epilogue (bias, ReLU, mask: tile_epilogue.hpp) is applied on the way out.
#include <immintrin.h>

#include <cstdint>

#include "../tile_epilogue.hpp"

namespace pydeconv::kernels {

void sgemm_ukernel_6x16_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             bool accumulate, const TileEpilogue& ep) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

  // Touch the lines the epilogue will write (or read) early, so they arrive while the k loop
  // runs (C's two lines per row, and the ReLU output's and mask's; see sgemm_avx512.cpp).
  auto touch = [](const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); };
  for (int i = 0; i < 6; ++i) {
    touch(c + i * ldc), touch(c + i * ldc + 15);
    if (ep.relu != nullptr && ep.relu != c) touch(ep.relu + i * ldc), touch(ep.relu + i * ldc + 15);
    if (ep.mask != nullptr) touch(ep.mask + i * ldc), touch(ep.mask + i * ldc + 15);
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

  // Write row r: C = acc, C = C + acc or C = bias + acc (a single rounding on top of the
  // chain), then the ReLU and its mask.
  const __m256 zero = _mm256_setzero_ps();
  const __m256i one = _mm256_set1_epi32(1);
  auto store_row = [&](int r, __m256 lo, __m256 hi) {
    float* row = c + r * ldc;
    if (accumulate) {
      lo = _mm256_add_ps(_mm256_loadu_ps(row), lo);
      hi = _mm256_add_ps(_mm256_loadu_ps(row + 8), hi);
    } else if (ep.bias != nullptr) {
      const __m256 b = _mm256_set1_ps(ep.bias[r]);
      lo = _mm256_add_ps(b, lo);
      hi = _mm256_add_ps(b, hi);
    }
    if (ep.relu == nullptr || ep.relu != c) {
      _mm256_storeu_ps(row, lo);
      _mm256_storeu_ps(row + 8, hi);
    }
    if (ep.relu == nullptr) return;
    float* y = ep.relu + r * ldc;
    _mm256_storeu_ps(y, _mm256_max_ps(lo, zero));
    _mm256_storeu_ps(y + 8, _mm256_max_ps(hi, zero));
    if (ep.mask != nullptr) {      // 32-bit 0/1 lanes narrowed to 16 bytes, in column order
      auto gt01 = [&](__m256 v) {  // 1 where v > 0 (false for NaN), else 0, as 32-bit lanes
        return _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_GT_OQ)), one);
      };
      auto narrow = [](__m256i v) {
        return _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      };
      const __m128i w0 = narrow(gt01(lo)), w1 = narrow(gt01(hi));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(ep.mask + r * ldc), _mm_packus_epi16(w0, w1));
    }
  };
  store_row(0, c00, c01);
  store_row(1, c10, c11);
  store_row(2, c20, c21);
  store_row(3, c30, c31);
  store_row(4, c40, c41);
  store_row(5, c50, c51);
}

}  // namespace pydeconv::kernels
