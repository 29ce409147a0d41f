// pydeconv: the AVX-512 SGEMM micro-kernels. This file is compiled with -mavx512f -mavx512vl
// -mavx512dq -mfma; gemm.cpp calls it only when cpu_has_avx512f().
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
#include <immintrin.h>

#include <cstdint>

namespace pydeconv::kernels {
namespace {

template <int P>
void ukernel(int64_t kc, const float* a, int64_t a_stride, const float* b, float* c, int64_t ldc,
             bool accumulate) {
  constexpr int R = 6 * P;  // rows of the C tile
  // An array, but every index is a compile-time constant after unrolling: it lives in registers.
  __m512 acc[R];
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();

  // Touch the C tile early so its lines arrive while the k loop runs.
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);

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

  // Write each row: C = acc, or C = C + acc (a single rounding on top of the chain).
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    _mm512_storeu_ps(row, accumulate ? _mm512_add_ps(_mm512_loadu_ps(row), acc[r]) : acc[r]);
  }
}

}  // namespace

void sgemm_ukernel_avx512(int64_t panels, int64_t kc, const float* a, int64_t a_stride,
                          const float* b, float* c, int64_t ldc, bool accumulate) {
  switch (panels) {
    case 4: return ukernel<4>(kc, a, a_stride, b, c, ldc, accumulate);
    case 3: return ukernel<3>(kc, a, a_stride, b, c, ldc, accumulate);
    case 2: return ukernel<2>(kc, a, a_stride, b, c, ldc, accumulate);
    default: return ukernel<1>(kc, a, a_stride, b, c, ldc, accumulate);
  }
}

}  // namespace pydeconv::kernels
