// Reference softmax over channels, in double throughout, from the definition
// y_c = exp(x_c) / sum_j exp(x_j) (shifted by the column's maximum so exp never overflows).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void softmax_forward_ref(const Tensor& in, Tensor& out) {
  const Shape& s = in.shape();
  std::vector<double> e(static_cast<size_t>(s.c));
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t i = 0; i < s.plane(); ++i) {
      double m = in.plane(n, 0)[i], sum = 0.0;
      for (int64_t c = 1; c < s.c; ++c) m = std::max(m, double(in.plane(n, c)[i]));
      for (int64_t c = 0; c < s.c; ++c) sum += e[c] = std::exp(double(in.plane(n, c)[i]) - m);
      for (int64_t c = 0; c < s.c; ++c) out.plane(n, c)[i] = static_cast<float>(e[c] / sum);
    }
}

// gin_c += sum_j dy_j/dx_c g_j = y_c (g_c - sum_j g_j y_j).
void softmax_backward_ref(const Tensor& y, const Tensor& gout, Tensor& gin, int64_t reps) {
  const Shape& s = gout.shape();
  for (int64_t b = 0; b < s.n; ++b)
    for (int64_t i = 0; i < s.plane(); ++i) {
      double dot = 0.0;
      for (int64_t c = 0; c < s.c; ++c)
        dot += double(gout.plane(b, c)[i]) * double(y.plane(b / reps, c)[i]);
      for (int64_t c = 0; c < s.c; ++c) {
        const double yc = y.plane(b / reps, c)[i];
        gin.plane(b, c)[i] += static_cast<float>(yc * (double(gout.plane(b, c)[i]) - dot));
      }
    }
}

}  // namespace pydeconv::kernels
