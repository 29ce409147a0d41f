// Peak fp32 FMA throughput probe: each thread runs independent FMA chains on ymm registers and,
// where the CPU has AVX-512F, on zmm registers too.
// Build: g++ -O2 -mavx2 -mfma -fopenmp bench/peak.cpp -o peak ; run: ./peak [threads...]
// Prints one line per thread count: "threads=T gflops=G isa=I avx2_gflops=A", G being the best
// rate of any ISA (I: avx2 or avx512, the one that reached it) and A the AVX2 rate; bench.py
// reads threads and gflops. Twelve independent chains hide the FMA latency (4-5 cycles) behind
// two FMA ports, so the loop runs at the machine's FMA issue rate.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static float fma_chains(long iters) {
  // Named accumulators (not an array) so they stay in registers at -O2.
  __m256 a0 = _mm256_set1_ps(0.00f), a1 = _mm256_set1_ps(0.01f), a2 = _mm256_set1_ps(0.02f);
  __m256 a3 = _mm256_set1_ps(0.03f), a4 = _mm256_set1_ps(0.04f), a5 = _mm256_set1_ps(0.05f);
  __m256 a6 = _mm256_set1_ps(0.06f), a7 = _mm256_set1_ps(0.07f), a8 = _mm256_set1_ps(0.08f);
  __m256 a9 = _mm256_set1_ps(0.09f), a10 = _mm256_set1_ps(0.10f), a11 = _mm256_set1_ps(0.11f);
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it) {
    a0 = _mm256_fmadd_ps(a0, x, y);
    a1 = _mm256_fmadd_ps(a1, x, y);
    a2 = _mm256_fmadd_ps(a2, x, y);
    a3 = _mm256_fmadd_ps(a3, x, y);
    a4 = _mm256_fmadd_ps(a4, x, y);
    a5 = _mm256_fmadd_ps(a5, x, y);
    a6 = _mm256_fmadd_ps(a6, x, y);
    a7 = _mm256_fmadd_ps(a7, x, y);
    a8 = _mm256_fmadd_ps(a8, x, y);
    a9 = _mm256_fmadd_ps(a9, x, y);
    a10 = _mm256_fmadd_ps(a10, x, y);
    a11 = _mm256_fmadd_ps(a11, x, y);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];  // returned so the compiler cannot drop the loop
}

// The same on zmm registers (16 floats per FMA). A target attribute instead of -mavx512f keeps
// the build line above; main() calls it only after checking the CPU.
__attribute__((target("avx512f"))) static float fma_chains_avx512(long iters) {
  __m512 a0 = _mm512_set1_ps(0.00f), a1 = _mm512_set1_ps(0.01f), a2 = _mm512_set1_ps(0.02f);
  __m512 a3 = _mm512_set1_ps(0.03f), a4 = _mm512_set1_ps(0.04f), a5 = _mm512_set1_ps(0.05f);
  __m512 a6 = _mm512_set1_ps(0.06f), a7 = _mm512_set1_ps(0.07f), a8 = _mm512_set1_ps(0.08f);
  __m512 a9 = _mm512_set1_ps(0.09f), a10 = _mm512_set1_ps(0.10f), a11 = _mm512_set1_ps(0.11f);
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it) {
    a0 = _mm512_fmadd_ps(a0, x, y);
    a1 = _mm512_fmadd_ps(a1, x, y);
    a2 = _mm512_fmadd_ps(a2, x, y);
    a3 = _mm512_fmadd_ps(a3, x, y);
    a4 = _mm512_fmadd_ps(a4, x, y);
    a5 = _mm512_fmadd_ps(a5, x, y);
    a6 = _mm512_fmadd_ps(a6, x, y);
    a7 = _mm512_fmadd_ps(a7, x, y);
    a8 = _mm512_fmadd_ps(a8, x, y);
    a9 = _mm512_fmadd_ps(a9, x, y);
    a10 = _mm512_fmadd_ps(a10, x, y);
    a11 = _mm512_fmadd_ps(a11, x, y);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  float out[16];
  _mm512_storeu_ps(out, s);
  return out[0];  // returned so the compiler cannot drop the loop
}

// The OS must also save the zmm and opmask state (XCR0 bits 1, 2, 5, 6, 7).
static bool has_avx512f() {
  if (!__builtin_cpu_supports("avx512f")) return false;
  unsigned int eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (eax & 0xE6) == 0xE6;
}

// Best of `reps` runs of `iters` iterations on `threads` threads, in GFLOP/s.
static double measure(bool zmm, int threads, long iters, int reps) {
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    volatile float sink = 0.0f;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
    {
      float v = zmm ? fma_chains_avx512(iters) : fma_chains(iters);
#pragma omp critical
      sink = sink + v;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double flops = 2.0 * (zmm ? 16 : 8) * 12 * static_cast<double>(iters) * threads;
    best = std::max(best, flops / s * 1e-9);
  }
  return best;
}

int main(int argc, char** argv) {
  std::vector<int> counts;
  for (int i = 1; i < argc; ++i) counts.push_back(std::atoi(argv[i]));
  if (counts.empty()) counts = {1, omp_get_num_procs()};
  for (int t : counts) {
    if (t < 1) continue;
    const double avx2 = measure(false, t, 20000000, 5);
    const double avx512 = has_avx512f() ? measure(true, t, 20000000, 5) : 0.0;
    std::printf("threads=%d gflops=%.1f isa=%s avx2_gflops=%.1f\n", t, std::max(avx2, avx512),
                avx512 > avx2 ? "avx512" : "avx2", avx2);
  }
  return 0;
}
