// Naive layer norm over channels at each position and its Jacobian-transpose product, in double:
// the definition of correct.
#include <cmath>
#include <vector>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

// Mean and 1/sqrt(var + eps) of the channels at position i of sample n (biased variance).
void moments(const Tensor& x, int64_t n, int64_t i, double eps, double& mean, double& rstd) {
  const Shape& s = x.shape();
  double sum = 0.0;
  for (int64_t c = 0; c < s.c; ++c) sum += x.plane(n, c)[i];
  mean = sum / double(s.c);
  double var = 0.0;
  for (int64_t c = 0; c < s.c; ++c) {
    const double d = x.plane(n, c)[i] - mean;
    var += d * d;
  }
  rstd = 1.0 / std::sqrt(var / double(s.c) + eps);
}

}  // namespace

void layer_norm_forward_ref(const Tensor& in, const float* scale, const float* bias, double eps,
                            Tensor& out) {
  const Shape& s = in.shape();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t i = 0; i < s.plane(); ++i) {
      double mean, rstd;
      moments(in, n, i, eps, mean, rstd);
      for (int64_t c = 0; c < s.c; ++c)
        out.plane(n, c)[i] = static_cast<float>((in.plane(n, c)[i] - mean) * rstd * scale[c] +
                                                (bias ? bias[c] : 0.0));
    }
}

void layer_norm_backward_ref(const Tensor& x, const Tensor& gout, const float* scale, double eps,
                             Tensor& gin, int64_t reps) {
  const Shape& s = gout.shape();
  std::vector<double> gs(static_cast<size_t>(s.c)), xh(static_cast<size_t>(s.c));
  for (int64_t b = 0; b < s.n; ++b)
    for (int64_t i = 0; i < s.plane(); ++i) {
      const int64_t n = b / reps;
      double mean, rstd;
      moments(x, n, i, eps, mean, rstd);
      double m1 = 0.0, m2 = 0.0;
      for (int64_t c = 0; c < s.c; ++c) {
        xh[c] = (x.plane(n, c)[i] - mean) * rstd;
        gs[c] = double(gout.plane(b, c)[i]) * scale[c];
        m1 += gs[c];
        m2 += gs[c] * xh[c];
      }
      m1 /= double(s.c);
      m2 /= double(s.c);
      for (int64_t c = 0; c < s.c; ++c)
        gin.plane(b, c)[i] += static_cast<float>(rstd * (gs[c] - m1 - xh[c] * m2));
    }
}

}  // namespace pydeconv::kernels
