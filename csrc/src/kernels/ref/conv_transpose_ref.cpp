// Naive transposed convolution (torch's conv_transpose2d) and its adjoint, double accumulation:
// the definition of correct. Input position i of a tap (ki, kj) lands on output i*s - p + k*d.
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void conv_transpose2d_forward_ref(const Tensor& in, const Tensor& weight, const float* bias,
                                  const Window2d& g, int64_t groups, Tensor& out) {
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int64_t cg = is.c / groups, ocg = os.c / groups;
  for (int64_t n = 0; n < os.n; ++n)
    for (int64_t oc = 0; oc < os.c; ++oc) {
      const int64_t gi = oc / ocg, ocl = oc % ocg;
      for (int64_t oy = 0; oy < os.h; ++oy)
        for (int64_t ox = 0; ox < os.w; ++ox) {
          double acc = bias ? bias[oc] : 0.0;
          for (int64_t c = gi * cg; c < (gi + 1) * cg; ++c)
            for (int64_t ki = 0; ki < g.kh; ++ki) {
              const int64_t ny = oy + g.pt - ki * g.dh;  // = iy * sh
              if (ny < 0 || ny % g.sh || ny / g.sh >= is.h) continue;
              for (int64_t kj = 0; kj < g.kw; ++kj) {
                const int64_t nx = ox + g.pl - kj * g.dw;
                if (nx < 0 || nx % g.sw || nx / g.sw >= is.w) continue;
                acc += double(in.plane(n, c)[(ny / g.sh) * is.w + nx / g.sw]) *
                       weight.data()[((c * ocg + ocl) * g.kh + ki) * g.kw + kj];
              }
            }
          out.plane(n, oc)[oy * os.w + ox] = static_cast<float>(acc);
        }
    }
}

void conv_transpose2d_backward_ref(const Tensor& gout, const Tensor& weight, const Window2d& g,
                                   int64_t groups, Tensor& gin) {
  const Shape& gs = gout.shape();
  const Shape& is = gin.shape();
  const int64_t cg = is.c / groups, ocg = gs.c / groups;
  for (int64_t n = 0; n < gs.n; ++n)
    for (int64_t c = 0; c < is.c; ++c) {
      const int64_t gi = c / cg;
      for (int64_t iy = 0; iy < is.h; ++iy)
        for (int64_t ix = 0; ix < is.w; ++ix) {
          double acc = 0.0;
          for (int64_t ocl = 0; ocl < ocg; ++ocl)
            for (int64_t ki = 0; ki < g.kh; ++ki) {
              const int64_t oy = iy * g.sh - g.pt + ki * g.dh;
              if (oy < 0 || oy >= gs.h) continue;
              for (int64_t kj = 0; kj < g.kw; ++kj) {
                const int64_t ox = ix * g.sw - g.pl + kj * g.dw;
                if (ox < 0 || ox >= gs.w) continue;
                acc += double(gout.plane(n, gi * ocg + ocl)[oy * gs.w + ox]) *
                       weight.data()[((c * ocg + ocl) * g.kh + ki) * g.kw + kj];
              }
            }
          gin.plane(n, c)[iy * is.w + ix] += static_cast<float>(acc);
        }
    }
}

}  // namespace pydeconv::kernels
