// Reference max pooling and unpooling: one output at a time, straight from the definition in
// docs/FORMAT.md. The fast kernels in pool.cpp are tested against these (switches bit-exact).
#include <limits>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void max_pool2d_forward_ref(const Tensor& in, const Window2d& g, Tensor& out,
                            IndexTensor& switches) {
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  for (int64_t p = 0; p < is.n * is.c; ++p) {
    const float* x = in.data() + p * is.plane();
    float* y = out.data() + p * os.plane();
    int32_t* sw = switches.data() + p * os.plane();
    for (int64_t oy = 0; oy < os.h; ++oy)
      for (int64_t ox = 0; ox < os.w; ++ox) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t arg = -1;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t iy = oy * g.sh - g.pt + ki * g.dh;
          if (iy < 0 || iy >= is.h) continue;  // padding never wins
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t ix = ox * g.sw - g.pl + kj * g.dw;
            if (ix < 0 || ix >= is.w) continue;
            const float v = x[iy * is.w + ix];
            // Strictly greater keeps the first maximum; `arg < 0` admits -inf and NaN inputs.
            if (arg < 0 || v > best) {
              best = v;
              arg = iy * is.w + ix;
            }
          }
        }
        y[oy * os.w + ox] = best;
        sw[oy * os.w + ox] = static_cast<int32_t>(arg);
      }
  }
}

void max_unpool2d_ref(const Tensor& gout, const IndexTensor& switches, Tensor& gin, int64_t reps) {
  const Shape& gs = gout.shape();
  for (int64_t b = 0; b < gs.n; ++b)
    for (int64_t ch = 0; ch < gs.c; ++ch)
      for (int64_t i = 0; i < gs.plane(); ++i) {
        const int32_t s = switches.plane(b / reps, ch)[i];
        if (s >= 0) gin.plane(b, ch)[s] += gout.plane(b, ch)[i];
      }
}

}  // namespace pydeconv::kernels
