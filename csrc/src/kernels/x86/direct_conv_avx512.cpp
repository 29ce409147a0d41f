// The direct convolution's AVX-512 micro-tile (direct_conv.hpp): 8 output channels x 3 zmm of
// one output row, 24 accumulators. Per tap: 3 loads of the phase-split input, 8 weight
// broadcasts, 24 FMAs. Built with -mavx512f -mavx512vl -mavx512dq -mfma; the AVX-512 kernel
// table holds it (dispatch.hpp).
#include <immintrin.h>

#include <cstdint>

#include "../direct_conv.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int R = 8, VW = 16;

template <int V>
void tile(const DirectTile& t) {
  touch_tile(t);
  __m512 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  const float* w = t.w;
  for (int64_t i = 0; i < t.k; ++i, w += t.ldw) {
    const float* s = t.src + t.off[i];
    __m512 x[V];
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) x[v] = _mm512_loadu_ps(s + v * VW);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 wr = _mm512_set1_ps(w[r]);
#pragma GCC unroll 3
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(wr, x[v], acc[r][v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int r = 0; r < t.rr; ++r) {
    const int64_t at = r * t.plane;
    const __m512 b = t.bias != nullptr ? _mm512_set1_ps(t.bias[r]) : zero;
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) {
      const int left = t.n - v * VW;
      const __mmask16 m = left >= VW ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
      // bias + acc, one rounding, as the GEMM's epilogue (no bias: acc itself; adding -0.f would
      // not change it either, but +0.f would turn a -0 sum into +0).
      const __m512 val = t.bias != nullptr ? _mm512_add_ps(b, acc[r][v]) : acc[r][v];
      float* o = t.out + at + v * VW;
      if (t.relu == nullptr) {
        _mm512_mask_storeu_ps(o, m, val);
        continue;
      }
      const __mmask16 gt = _mm512_cmp_ps_mask(val, zero, _CMP_GT_OQ);
      if (t.relu != t.out) _mm512_mask_storeu_ps(o, m, val);
      _mm512_mask_storeu_ps(t.relu + at + v * VW, m, _mm512_maskz_mov_ps(gt, val));
      if (t.mask != nullptr)
        _mm512_mask_cvtepi32_storeu_epi8(t.mask + at + v * VW, m,
                                         _mm512_maskz_mov_epi32(gt, _mm512_set1_epi32(1)));
    }
  }
}

}  // namespace

const DirectShape direct_shape_avx512{R, 3, VW};  // tile<1..3>

void direct_tile_avx512(const DirectTile& t) {
  if (t.n > 2 * VW) return tile<3>(t);
  if (t.n > VW) return tile<2>(t);
  tile<1>(t);
}

}  // namespace pydeconv::kernels
