// Reference cross-channel LRN, one position and one channel at a time, in double precision:
//   y_c = x_c * d_c^-beta,  d_c = bias + alpha/size * sum_{j in win(c)} x_j^2
//   dL/dx_j = g_j d_j^-beta - 2 beta alpha/size x_j sum_{c: j in win(c)} g_c x_c d_c^(-beta-1)
// win(c) = [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to the channels (ONNX).
#include <algorithm>
#include <cmath>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

// d_c at channel `ch` of the column x (channel stride hw).
double denominator(const float* x, int64_t c, int64_t hw, const LrnParams& p, int64_t ch) {
  const int64_t lo = (p.size - 1) / 2, hi = p.size - 1 - lo;
  double sq = 0.0;
  for (int64_t j = std::max<int64_t>(0, ch - lo); j <= std::min(c - 1, ch + hi); ++j)
    sq += double(x[j * hw]) * x[j * hw];
  return p.bias + p.alpha / double(p.size) * sq;
}

}  // namespace

void lrn_forward_ref(const Tensor& in, const LrnParams& p, Tensor& out) {
  const Shape& s = in.shape();
  const int64_t hw = s.plane();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t i = 0; i < hw; ++i) {
      const float* x = in.sample(n) + i;
      float* y = out.sample(n) + i;
      for (int64_t ch = 0; ch < s.c; ++ch)
        y[ch * hw] =
            static_cast<float>(x[ch * hw] * std::pow(denominator(x, s.c, hw, p, ch), -p.beta));
    }
}

void lrn_backward_ref(const Tensor& x, const Tensor& gout, const LrnParams& p, Tensor& gin,
                      int64_t reps) {
  const Shape& s = gout.shape();
  const int64_t hw = s.plane();
  const int64_t lo = (p.size - 1) / 2, hi = p.size - 1 - lo;
  const double k2b = 2.0 * p.beta * p.alpha / double(p.size);
  for (int64_t b = 0; b < s.n; ++b)
    for (int64_t i = 0; i < hw; ++i) {
      const float* xx = x.sample(b / reps) + i;
      const float* g = gout.sample(b) + i;
      float* out = gin.sample(b) + i;
      for (int64_t j = 0; j < s.c; ++j) {
        double acc = 0.0;  // over the channels c whose window holds j: c in [j - hi, j + lo]
        for (int64_t ch = std::max<int64_t>(0, j - hi); ch <= std::min(s.c - 1, j + lo); ++ch)
          acc += double(g[ch * hw]) * xx[ch * hw] *
                 std::pow(denominator(xx, s.c, hw, p, ch), -p.beta - 1.0);
        out[j * hw] += static_cast<float>(
            g[j * hw] * std::pow(denominator(xx, s.c, hw, p, j), -p.beta) - k2b * xx[j * hw] * acc);
      }
    }
}

}  // namespace pydeconv::kernels
