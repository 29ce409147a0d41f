// Peak fp32 FMA throughput probe: each thread runs independent FMA chains on ymm registers.
// Build: g++ -O2 -mavx2 -mfma -fopenmp bench/peak.cpp -o peak ; run: ./peak [threads...]
// Prints one line per thread count: "threads=T gflops=G". Twelve independent chains hide the
// FMA latency (4-5 cycles) behind two FMA ports, so the loop runs at the machine's FMA issue rate.
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

// Best of `reps` runs of `iters` iterations on `threads` threads, in GFLOP/s.
static double measure(int threads, long iters, int reps) {
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    volatile float sink = 0.0f;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
    {
      float v = fma_chains(iters);
#pragma omp critical
      sink = sink + v;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double flops = 2.0 * 8 * 12 * static_cast<double>(iters) * threads;
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
    std::printf("threads=%d gflops=%.1f\n", t, measure(t, 20000000, 5));
  }
  return 0;
}
