// The direct convolution's AVX2 micro-tile (direct_conv.hpp): 4 output channels x 3 ymm of one
// output row, 12 accumulators. Per tap: 3 loads of the phase-split input, 4 weight broadcasts,
// 12 FMAs. Built with -mavx2 -mfma; the AVX2 kernel table holds it
// (dispatch.hpp).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../direct_conv.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int R = 4, VW = 8;

// Stores the first `n` (1..8) lanes of v.
inline void store_n(float* d, __m256 v, int n) {
  if (n >= VW) return _mm256_storeu_ps(d, v);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  _mm256_maskstore_ps(d, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), v);
}

// Bytes 0/1 of the first `n` lanes of a compare result.
inline void store_mask_n(uint8_t* d, __m256 gt, int n) {
  const unsigned bits = static_cast<unsigned>(_mm256_movemask_ps(gt));
  uint8_t b[VW];
  for (int j = 0; j < VW; ++j) b[j] = static_cast<uint8_t>((bits >> j) & 1u);
  std::memcpy(d, b, static_cast<size_t>(n < VW ? n : VW));
}

template <int V>
void tile(const DirectTile& t) {
  touch_tile(t);
  __m256 acc[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_ps();
  const float* w = t.w;
  for (int64_t i = 0; i < t.k; ++i, w += t.ldw) {
    const float* s = t.src + t.off[i];
    __m256 x[V];
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) x[v] = _mm256_loadu_ps(s + v * VW);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 wr = _mm256_broadcast_ss(w + r);
#pragma GCC unroll 3
      for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(wr, x[v], acc[r][v]);
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int r = 0; r < t.rr; ++r) {
    const int64_t at = r * t.plane;
    const __m256 b = t.bias != nullptr ? _mm256_set1_ps(t.bias[r]) : zero;
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) {
      const int left = t.n - v * VW;
      // bias + acc, one rounding, as the GEMM's epilogue.
      const __m256 val = t.bias != nullptr ? _mm256_add_ps(b, acc[r][v]) : acc[r][v];
      float* o = t.out + at + v * VW;
      if (t.relu == nullptr) {
        store_n(o, val, left);
        continue;
      }
      const __m256 gt = _mm256_cmp_ps(val, zero, _CMP_GT_OQ);
      if (t.relu != t.out) store_n(o, val, left);
      store_n(t.relu + at + v * VW, _mm256_and_ps(gt, val), left);
      if (t.mask != nullptr) store_mask_n(t.mask + at + v * VW, gt, left);
    }
  }
}

}  // namespace

const DirectShape direct_shape_avx2{R, 3, VW};  // tile<1..3>

void direct_tile_avx2(const DirectTile& t) {
  if (t.n > 2 * VW) return tile<3>(t);
  if (t.n > VW) return tile<2>(t);
  tile<1>(t);
}

}  // namespace pydeconv::kernels
