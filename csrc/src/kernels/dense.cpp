// linear (GEMM), per-channel affine (batch norm), softmax over channels.
#include <algorithm>
#include <cmath>
#include <vector>

#include "pydeconv/gemm.hpp"
#include "pydeconv/kernels.hpp"

namespace pydeconv::kernels {

void linear_forward(const Ctx& ctx, const Tensor& in, const Tensor& weight, const float* bias,
                    Tensor& out) {
  const int64_t n = in.shape().n, i = in.shape().sample(), o = weight.shape().n;
  if (ctx.reference)
    sgemm_ref(false, true, n, o, i, in.data(), i, weight.data(), i, out.data(), o, false);
  else
    sgemm(false, true, n, o, i, in.data(), i, weight.data(), i, out.data(), o, false, ctx.threads);
  if (bias)
    for (int64_t s = 0; s < n; ++s)
      for (int64_t j = 0; j < o; ++j) out.data()[s * o + j] += bias[j];
}

void linear_backward(const Ctx& ctx, const Tensor& gout, const Tensor& weight, Tensor& gin) {
  const int64_t b = gout.shape().n, o = gout.shape().sample(), i = gin.shape().sample();
  if (ctx.reference)
    sgemm_ref(false, false, b, i, o, gout.data(), o, weight.data(), i, gin.data(), i, true);
  else
    sgemm(false, false, b, i, o, gout.data(), o, weight.data(), i, gin.data(), i, true,
          ctx.threads);
}

void channel_affine_forward(const Ctx& ctx, const Tensor& in, const float* a, const float* b,
                            Tensor& out) {
  const Shape& s = in.shape();
  const int64_t planes = s.n * s.c, hw = s.plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % s.c;
    const float* x = in.data() + p * hw;
    float* y = out.data() + p * hw;
    for (int64_t i = 0; i < hw; ++i) y[i] = x[i] * a[c] + b[c];
  }
}

void channel_affine_backward(const Ctx& ctx, const Tensor& gout, const Regions& rs, const float* a,
                             Tensor& gin) {
  const Shape& s = gout.shape();
  const int64_t planes = s.n * s.c, hw = s.plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % s.c;
    const Region& r = rs[p / s.c];
    const float* g = gout.data() + p * hw;
    float* d = gin.data() + p * hw;
    for (int64_t y = r.y0; y < r.y1; ++y)
      for (int64_t x = r.x0; x < r.x1; ++x) d[y * s.w + x] += g[y * s.w + x] * a[c];
  }
}

void softmax_forward(const Ctx& ctx, const Tensor& in, Tensor& out) {
  const Shape& s = in.shape();
  const int64_t hw = s.plane(), cols = s.n * hw;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t q = 0; q < cols; ++q) {
    const int64_t n = q / hw, i = q % hw;
    const float* x = in.sample(n) + i;
    float* y = out.sample(n) + i;
    float m = x[0];
    for (int64_t c = 1; c < s.c; ++c) m = std::max(m, x[c * hw]);
    double sum = 0.0;
    for (int64_t c = 0; c < s.c; ++c) sum += std::exp(double(x[c * hw]) - m);
    for (int64_t c = 0; c < s.c; ++c)
      y[c * hw] = static_cast<float>(std::exp(double(x[c * hw]) - m) / sum);
  }
}

// gin = y * (g - <g, y>) per column, the softmax Jacobian-vector product.
void softmax_backward(const Ctx& ctx, const Tensor& y, const Tensor& gout, Tensor& gin,
                      int64_t reps) {
  const Shape& s = gout.shape();
  const int64_t hw = s.plane(), cols = s.n * hw;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t q = 0; q < cols; ++q) {
    const int64_t b = q / hw, i = q % hw;
    const float* yy = y.sample(b / reps) + i;
    const float* g = gout.sample(b) + i;
    float* d = gin.sample(b) + i;
    double dot = 0.0;
    for (int64_t c = 0; c < s.c; ++c) dot += double(g[c * hw]) * yy[c * hw];
    for (int64_t c = 0; c < s.c; ++c)
      d[c * hw] += static_cast<float>(yy[c * hw] * (g[c * hw] - dot));
  }
}

}  // namespace pydeconv::kernels
