// Softmax over channels (per sample and position), and its backward through the Jacobian at the
// forward output.
#include <algorithm>
#include <cmath>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void softmax_forward(const Ctx& ctx, const Tensor& in, Tensor& out) {
  if (ctx.reference) return softmax_forward_ref(in, out);
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
  if (ctx.reference) return softmax_backward_ref(y, gout, gin, reps);
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
