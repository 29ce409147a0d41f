// Reference average pooling (windowed and global), one output at a time from the definition in
// docs/FORMAT.md: the mean over the window's in-image elements (count_include_pad: over the
// window clipped to the padded image); backward spreads each value evenly over the same elements.
#include <algorithm>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

// The elements the mean divides by, for output (oy, ox).
int64_t window_count(const Window2d& g, int64_t h, int64_t w, int64_t oy, int64_t ox,
                     bool include_pad) {
  const int64_t lo_y = include_pad ? -g.pt : 0, hi_y = include_pad ? h + g.pb : h;
  const int64_t lo_x = include_pad ? -g.pl : 0, hi_x = include_pad ? w + g.pr : w;
  int64_t n = 0;
  for (int64_t ki = 0; ki < g.kh; ++ki)
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      const int64_t iy = oy * g.sh - g.pt + ki, ix = ox * g.sw - g.pl + kj;
      n += iy >= lo_y && iy < hi_y && ix >= lo_x && ix < hi_x;
    }
  return std::max<int64_t>(n, 1);
}

}  // namespace

void avg_pool2d_forward_ref(const Tensor& in, const Window2d& g, bool count_include_pad,
                            Tensor& out) {
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  for (int64_t p = 0; p < is.n * is.c; ++p)
    for (int64_t oy = 0; oy < os.h; ++oy)
      for (int64_t ox = 0; ox < os.w; ++ox) {
        double acc = 0.0;
        for (int64_t ki = 0; ki < g.kh; ++ki)
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t iy = oy * g.sh - g.pt + ki, ix = ox * g.sw - g.pl + kj;
            if (iy >= 0 && iy < is.h && ix >= 0 && ix < is.w)
              acc += in.data()[p * is.plane() + iy * is.w + ix];
          }
        out.data()[p * os.plane() + oy * os.w + ox] = static_cast<float>(
            acc / double(window_count(g, is.h, is.w, oy, ox, count_include_pad)));
      }
}

void avg_pool2d_backward_ref(const Tensor& gout, const Window2d& g, bool count_include_pad,
                             Tensor& gin) {
  const Shape& gs = gout.shape();
  const Shape& is = gin.shape();
  for (int64_t p = 0; p < gs.n * gs.c; ++p)
    for (int64_t oy = 0; oy < gs.h; ++oy)
      for (int64_t ox = 0; ox < gs.w; ++ox) {
        const double share = double(gout.data()[p * gs.plane() + oy * gs.w + ox]) /
                             double(window_count(g, is.h, is.w, oy, ox, count_include_pad));
        for (int64_t ki = 0; ki < g.kh; ++ki)
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t iy = oy * g.sh - g.pt + ki, ix = ox * g.sw - g.pl + kj;
            if (iy >= 0 && iy < is.h && ix >= 0 && ix < is.w)
              gin.data()[p * is.plane() + iy * is.w + ix] += static_cast<float>(share);
          }
      }
}

void global_avg_pool_forward_ref(const Tensor& in, Tensor& out) {
  const Shape& s = in.shape();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c) {
      double acc = 0.0;
      for (int64_t i = 0; i < s.plane(); ++i) acc += in.plane(n, c)[i];
      out.plane(n, c)[0] = static_cast<float>(acc / double(s.plane()));
    }
}

void global_avg_pool_backward_ref(const Tensor& gout, Tensor& gin) {
  const Shape& s = gin.shape();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c) {
      const double share = double(gout.plane(n, c)[0]) / double(s.plane());
      for (int64_t i = 0; i < s.plane(); ++i) gin.plane(n, c)[i] += static_cast<float>(share);
    }
}

}  // namespace pydeconv::kernels
