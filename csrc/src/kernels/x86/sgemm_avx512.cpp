// pydeconv: the AVX-512 SGEMM micro-kernels. This file is compiled with -mavx512f -mavx512vl
// -mavx512dq -mfma; only the AVX-512 kernel table holds it (dispatch.hpp).
//
// C[6P x 16] (+)= A[6P x kc] * Bpanel[kc x 16] for P = 1..4 consecutive A panels, reading the
// same packed layout as the 6x16 kernels (so PackedA and BPanels need no second layout):
//   a: P consecutive 6-row A panels, panel q at a + q * a_stride, each a[p*6 + i];
//   b: one 16-column B panel, b[p*16 + j], 64-byte aligned.
// One zmm holds a whole 16-wide C row, so for P = 4 the 24 accumulators + 1 B register fit in
// the 32 zmm registers. Each k step loads B once and issues 6P independent FMAs whose A operand
// is an embedded broadcast from memory ({1to16}): 24 chains cover the FMA latency on two ports,
// and 24 rows per B load (vs 6 in the AVX2 kernel) keep the loads under the FMA rate. P < 4
// serves the last panels of a block (at P = 1, 6 chains cannot quite hide the FMA latency, but
// a zmm still does twice the work of a ymm).
// Each C element is summed over p in order 0..kc-1 by one FMA chain starting at 0, then added
// to C once: exactly what the 6x16 AVX2 kernel does, so the two give bit-identical results.
// The tile's epilogue (bias, ReLU, mask: tile_epilogue.hpp) is applied on the way out.
#include <immintrin.h>

#include <cstdint>

#include "../tile_epilogue.hpp"

namespace pydeconv::kernels {
namespace {

template <int P>
void ukernel(int64_t kc, const float* a, int64_t a_stride, const float* b, float* c, int64_t ldc,
             bool accumulate, const TileEpilogue& ep) {
  constexpr int R = 6 * P;  // rows of the C tile
  // An array, but every index is a compile-time constant after unrolling: it lives in registers.
  __m512 acc[R];
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();

  // Touch the lines the epilogue will write (or read) early, so they arrive while the k loop
  // runs: a 16-float C row spans two lines unless ldc keeps rows 64-byte aligned, and the ReLU's
  // own output and mask rows are more lines again. Stores that miss at the end would stall the
  // tile (the two-pass epilogue this replaces got these lines in by writing them before the loop).
  auto touch = [](const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); };
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r) touch(c + r * ldc), touch(c + r * ldc + 15);
  if (ep.relu != nullptr && ep.relu != c) {
#pragma GCC unroll 24
    for (int r = 0; r < R; ++r) touch(ep.relu + r * ldc), touch(ep.relu + r * ldc + 15);
  }
  if (ep.mask != nullptr) {
#pragma GCC unroll 24
    for (int r = 0; r < R; ++r) touch(ep.mask + r * ldc), touch(ep.mask + r * ldc + 15);
  }

  // One k step: one B row against the 6P A values of column p. _mm512_set1_ps(x[i]) as an FMA
  // operand compiles to an embedded-broadcast memory operand.
  // One pointer per panel (not a + q * a_stride per use) so each operand is pointer + constant.
  const float* ap[P];
#pragma GCC unroll 4
  for (int q = 0; q < P; ++q) ap[q] = a + q * a_stride;
  auto step = [&](int64_t off, const float* bp) {
    const __m512 bv = _mm512_load_ps(bp);
#pragma GCC unroll 24
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ap[r / 6][off + r % 6]), bv, acc[r]);
  };
  // The A streams come from L2 at twice the AVX2 kernel's rate (in L1 the P = 4 kernel runs at
  // ~150 GFLOP/s, in sgemm ~110): fetching each stream 24 k steps ahead, one line per stream
  // every two steps (48 bytes consumed per stream), gained a few percent in sgemm.
  constexpr int64_t kPrefetch = 6 * 24;
  int64_t p = 0;
  for (; p + 2 <= kc; p += 2, b += 32) {
#pragma GCC unroll 4
    for (int q = 0; q < P; ++q)
      _mm_prefetch(reinterpret_cast<const char*>(ap[q] + kPrefetch), _MM_HINT_T0);
    step(0, b);
    step(6, b + 16);
#pragma GCC unroll 4
    for (int q = 0; q < P; ++q) ap[q] += 12;
  }
  if (p < kc) step(0, b);

  // Write each row: C = acc, C = C + acc or C = bias + acc (a single rounding on top of the
  // chain), then the ReLU and its mask.
  const __m512 zero = _mm512_setzero_ps();
  const __m512i one = _mm512_set1_epi32(1);
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    __m512 v = acc[r];
    if (accumulate) {
      v = _mm512_add_ps(_mm512_loadu_ps(row), v);
    } else if (ep.bias != nullptr) {
      v = _mm512_add_ps(_mm512_set1_ps(ep.bias[r]), v);
    }
    if (ep.relu == nullptr) {
      _mm512_storeu_ps(row, v);
      continue;
    }
    // Lanes with C > 0 (false for NaN) keep C, the rest become +0: max(C, 0) exactly. (The
    // zero-masking forms also avoid GCC 12's undefined-source intrinsics, bug 105593.)
    const __mmask16 gt = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
    if (ep.relu != c) _mm512_storeu_ps(row, v);
    _mm512_storeu_ps(ep.relu + r * ldc, _mm512_maskz_mov_ps(gt, v));
    if (ep.mask != nullptr)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(ep.mask + r * ldc),
                       _mm512_maskz_cvtepi32_epi8(gt, one));
  }
}

}  // namespace

void sgemm_ukernel_avx512(int64_t panels, int64_t kc, const float* a, int64_t a_stride,
                          const float* b, float* c, int64_t ldc, bool accumulate,
                          const TileEpilogue& ep) {
  switch (panels) {
    case 4: return ukernel<4>(kc, a, a_stride, b, c, ldc, accumulate, ep);
    case 3: return ukernel<3>(kc, a, a_stride, b, c, ldc, accumulate, ep);
    case 2: return ukernel<2>(kc, a, a_stride, b, c, ldc, accumulate, ep);
    default: return ukernel<1>(kc, a, a_stride, b, c, ldc, accumulate, ep);
  }
}

}  // namespace pydeconv::kernels
