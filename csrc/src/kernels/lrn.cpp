// Cross-channel local response normalisation and its Jacobian-transpose product.
//   y_c = x_c * d_c^-beta,  d_c = bias + alpha/size * sum_{j in win(c)} x_j^2
//   dL/dx_j = g_j d_j^-beta - 2 beta alpha/size x_j sum_{c: j in win(c)} g_c x_c d_c^(-beta-1)
#include <cmath>
#include <vector>

#include "pydeconv/kernels.hpp"

namespace pydeconv::kernels {
namespace {

// Channels j in the window of c: [c - lo, c + hi].
void window(const LrnParams& p, int64_t& lo, int64_t& hi) {
  lo = (p.size - 1) / 2;
  hi = p.size - 1 - lo;
}

// d_c for every channel of one position (column stride hw).
void denominators(const float* x, int64_t c, int64_t hw, const LrnParams& p, double* d) {
  int64_t lo, hi;
  window(p, lo, hi);
  const double k = p.alpha / double(p.size);
  for (int64_t ch = 0; ch < c; ++ch) {
    double sq = 0.0;
    for (int64_t j = std::max<int64_t>(0, ch - lo); j <= std::min(c - 1, ch + hi); ++j)
      sq += double(x[j * hw]) * x[j * hw];
    d[ch] = p.bias + k * sq;
  }
}

}  // namespace

void lrn_forward(const Ctx& ctx, const Tensor& in, const LrnParams& p, Tensor& out) {
  const Shape& s = in.shape();
  const int64_t hw = s.plane(), cols = s.n * hw;
#pragma omp parallel num_threads(ctx.threads) if (ctx.threads > 1)
  {
    std::vector<double> d(static_cast<size_t>(s.c));
#pragma omp for schedule(static)
    for (int64_t q = 0; q < cols; ++q) {
      const float* x = in.sample(q / hw) + q % hw;
      float* y = out.sample(q / hw) + q % hw;
      denominators(x, s.c, hw, p, d.data());
      for (int64_t ch = 0; ch < s.c; ++ch)
        y[ch * hw] = static_cast<float>(x[ch * hw] * std::pow(d[ch], -p.beta));
    }
  }
}

void lrn_backward(const Ctx& ctx, const Tensor& x, const Tensor& gout, const Regions& rs,
                  const LrnParams& p, Tensor& gin, int64_t reps) {
  const Shape& s = gout.shape();
  const int64_t hw = s.plane();
  int64_t lo, hi;
  window(p, lo, hi);
  const double k2b = 2.0 * p.beta * p.alpha / double(p.size);
  for (int64_t b = 0; b < s.n; ++b) {
    const Region& r = rs[b];
    const int64_t rw = r.x1 - r.x0, cols = r.empty() ? 0 : (r.y1 - r.y0) * rw;
#pragma omp parallel num_threads(ctx.threads) if (ctx.threads > 1 && cols > 64)
    {
      std::vector<double> d(static_cast<size_t>(s.c)), t(static_cast<size_t>(s.c));
#pragma omp for schedule(static)
      for (int64_t q = 0; q < cols; ++q) {
        const int64_t pos = (r.y0 + q / rw) * s.w + r.x0 + q % rw;
        const float* xx = x.sample(b / reps) + pos;
        const float* g = gout.sample(b) + pos;
        float* out = gin.sample(b) + pos;
        denominators(xx, s.c, hw, p, d.data());
        for (int64_t ch = 0; ch < s.c; ++ch)
          t[ch] = double(g[ch * hw]) * xx[ch * hw] * std::pow(d[ch], -p.beta - 1.0);
        for (int64_t j = 0; j < s.c; ++j) {
          double acc = 0.0;  // sum over c whose window holds j: c in [j - hi, j + lo]
          for (int64_t ch = std::max<int64_t>(0, j - hi); ch <= std::min(s.c - 1, j + lo); ++ch)
            acc += t[ch];
          out[j * hw] +=
              static_cast<float>(g[j * hw] * std::pow(d[j], -p.beta) - k2b * xx[j * hw] * acc);
        }
      }
    }
  }
}

}  // namespace pydeconv::kernels
