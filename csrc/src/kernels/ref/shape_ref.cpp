// Reference kernels of the structure kinds (mul, upsample, slice, pad, channel_shuffle): element by
// element over whole tensors, no regions; backward sums in double and then adds to the gradient.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

// The index of (n, c, y, x) in a tensor of shape s, broadcast along its dims of size 1.
int64_t bcast_index(const Shape& s, int64_t n, int64_t c, int64_t y, int64_t x) {
  const int64_t cc = s.c == 1 ? 0 : c, yy = s.h == 1 ? 0 : y, xx = s.w == 1 ? 0 : x;
  return ((n * s.c + cc) * s.h + yy) * s.w + xx;
}

// acc (shape of g) added to g.
void add_into(const std::vector<double>& acc, Tensor& g) {
  for (int64_t i = 0; i < g.numel(); ++i)
    g.data()[i] = static_cast<float>(double(g.data()[i]) + acc[static_cast<size_t>(i)]);
}

// gin += gout * other, summed over gin's broadcast dims.
void mul_backward_one_ref(const Tensor& gout, const Tensor& other, Tensor& gin, int64_t reps) {
  const Shape& gs = gout.shape();
  std::vector<double> acc(static_cast<size_t>(gin.numel()), 0.0);
  for (int64_t b = 0; b < gs.n; ++b)
    for (int64_t c = 0; c < gs.c; ++c)
      for (int64_t y = 0; y < gs.h; ++y)
        for (int64_t x = 0; x < gs.w; ++x) {
          const double g = gout.data()[((b * gs.c + c) * gs.h + y) * gs.w + x];
          const double o = other.data()[bcast_index(other.shape(), b / reps, c, y, x)];
          acc[static_cast<size_t>(bcast_index(gin.shape(), b, c, y, x))] += g * o;
        }
  add_into(acc, gin);
}

// PyTorch's source coordinate for bilinear interpolation (area_pixel_compute_source_index), in
// double: output index o of `out` from an input of `in`, integer scale s.
double bilinear_source(int64_t o, int64_t in, int64_t out, int64_t s, bool align_corners) {
  if (align_corners) return out > 1 ? double(o) * double(in - 1) / double(out - 1) : 0.0;
  const double src = (double(o) + 0.5) / double(s) - 0.5;
  return src < 0 ? 0.0 : src;
}

// The input taps (i0, i1) and their weights (w0, w1) of output index o along one axis.
void bilinear_taps(int64_t o, int64_t in, int64_t out, int64_t s, bool align_corners, int64_t& i0,
                   int64_t& i1, double& w0, double& w1) {
  const double src = bilinear_source(o, in, out, s, align_corners);
  i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), in - 1);
  i1 = std::min<int64_t>(i0 + 1, in - 1);
  w1 = src - double(i0);
  w0 = 1.0 - w1;
}

int64_t reflect(int64_t i, int64_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// The input pixel (iy, ix) that padded output pixel (y, x) copies; false when it is padding.
bool pad_source(const Pad2d& p, const Shape& is, int64_t y, int64_t x, int64_t& iy, int64_t& ix) {
  iy = y - p.t;
  ix = x - p.l;
  if (p.reflect) {
    iy = reflect(iy, is.h);
    ix = reflect(ix, is.w);
  }
  return iy >= 0 && iy < is.h && ix >= 0 && ix < is.w;
}

}  // namespace

void mul_forward_ref(const Tensor& a, const Tensor& b, Tensor& out) {
  const Shape& s = out.shape();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x)
          out.data()[((n * s.c + c) * s.h + y) * s.w + x] =
              static_cast<float>(double(a.data()[bcast_index(a.shape(), n, c, y, x)]) *
                                 double(b.data()[bcast_index(b.shape(), n, c, y, x)]));
}

void mul_backward_ref(const Tensor& gout, const Tensor& a, const Tensor& b, Tensor* ga, Tensor* gb,
                      int64_t reps) {
  if (ga) mul_backward_one_ref(gout, b, *ga, reps);
  if (gb) mul_backward_one_ref(gout, a, *gb, reps);
}

void upsample_forward_ref(const Tensor& in, const UpsampleGeom& u, Tensor& out) {
  const Shape &is = in.shape(), &os = out.shape();
  for (int64_t n = 0; n < os.n; ++n)
    for (int64_t c = 0; c < os.c; ++c) {
      const float* x = in.plane(n, c);
      float* y = out.plane(n, c);
      for (int64_t oy = 0; oy < os.h; ++oy)
        for (int64_t ox = 0; ox < os.w; ++ox) {
          if (!u.bilinear) {
            y[oy * os.w + ox] = x[(oy / u.sh) * is.w + ox / u.sw];
            continue;
          }
          int64_t y0, y1, x0, x1;
          double wy0, wy1, wx0, wx1;
          bilinear_taps(oy, is.h, os.h, u.sh, u.align_corners, y0, y1, wy0, wy1);
          bilinear_taps(ox, is.w, os.w, u.sw, u.align_corners, x0, x1, wx0, wx1);
          const double v = wy0 * (wx0 * x[y0 * is.w + x0] + wx1 * x[y0 * is.w + x1]) +
                           wy1 * (wx0 * x[y1 * is.w + x0] + wx1 * x[y1 * is.w + x1]);
          y[oy * os.w + ox] = static_cast<float>(v);
        }
    }
}

void upsample_backward_ref(const Tensor& gout, const UpsampleGeom& u, Tensor& gin) {
  const Shape &is = gin.shape(), &os = gout.shape();
  std::vector<double> acc(static_cast<size_t>(gin.numel()), 0.0);
  for (int64_t n = 0; n < os.n; ++n)
    for (int64_t c = 0; c < os.c; ++c) {
      const float* g = gout.plane(n, c);
      double* d = acc.data() + (n * is.c + c) * is.plane();
      for (int64_t oy = 0; oy < os.h; ++oy)
        for (int64_t ox = 0; ox < os.w; ++ox) {
          const double v = g[oy * os.w + ox];
          if (!u.bilinear) {
            d[(oy / u.sh) * is.w + ox / u.sw] += v;
            continue;
          }
          int64_t y0, y1, x0, x1;
          double wy0, wy1, wx0, wx1;
          bilinear_taps(oy, is.h, os.h, u.sh, u.align_corners, y0, y1, wy0, wy1);
          bilinear_taps(ox, is.w, os.w, u.sw, u.align_corners, x0, x1, wx0, wx1);
          d[y0 * is.w + x0] += v * wy0 * wx0;
          d[y0 * is.w + x1] += v * wy0 * wx1;
          d[y1 * is.w + x0] += v * wy1 * wx0;
          d[y1 * is.w + x1] += v * wy1 * wx1;
        }
    }
  add_into(acc, gin);
}

// The first input element of row (n, c, y) of a slice along `axis` from `start`: each output row
// is a contiguous run of the input (along W from `start`, or a whole row along C or H).
namespace {
int64_t slice_source_row(const Shape& is, int axis, int64_t start, int64_t n, int64_t c,
                         int64_t y) {
  const int64_t ic = axis == 1 ? c + start : c, iy = axis == 2 ? y + start : y;
  return ((n * is.c + ic) * is.h + iy) * is.w + (axis == 3 ? start : 0);
}
}  // namespace

void slice_forward_ref(const Tensor& in, int axis, int64_t start, Tensor& out) {
  const Shape &is = in.shape(), &os = out.shape();
  float* o = out.data();
  for (int64_t n = 0; n < os.n; ++n)
    for (int64_t c = 0; c < os.c; ++c)
      for (int64_t y = 0; y < os.h; ++y, o += os.w) {
        const float* src = in.data() + slice_source_row(is, axis, start, n, c, y);
        std::copy(src, src + os.w, o);
      }
}

void slice_backward_ref(const Tensor& gout, int axis, int64_t start, Tensor& gin) {
  const Shape &os = gout.shape(), &is = gin.shape();
  const float* g = gout.data();
  for (int64_t n = 0; n < os.n; ++n)
    for (int64_t c = 0; c < os.c; ++c)
      for (int64_t y = 0; y < os.h; ++y, g += os.w) {
        float* dst = gin.data() + slice_source_row(is, axis, start, n, c, y);
        for (int64_t x = 0; x < os.w; ++x) dst[x] += g[x];
      }
}

void pad_forward_ref(const Tensor& in, const Pad2d& p, Tensor& out) {
  const Shape &is = in.shape(), &os = out.shape();
  for (int64_t n = 0; n < os.n; ++n)
    for (int64_t c = 0; c < os.c; ++c)
      for (int64_t y = 0; y < os.h; ++y)
        for (int64_t x = 0; x < os.w; ++x) {
          int64_t iy, ix;
          const bool inside = pad_source(p, is, y, x, iy, ix);
          out.plane(n, c)[y * os.w + x] = inside ? in.plane(n, c)[iy * is.w + ix] : p.value;
        }
}

void pad_backward_ref(const Tensor& gout, const Pad2d& p, Tensor& gin) {
  const Shape &is = gin.shape(), &os = gout.shape();
  std::vector<double> acc(static_cast<size_t>(gin.numel()), 0.0);
  for (int64_t n = 0; n < os.n; ++n)
    for (int64_t c = 0; c < os.c; ++c)
      for (int64_t y = 0; y < os.h; ++y)
        for (int64_t x = 0; x < os.w; ++x) {
          int64_t iy, ix;
          if (pad_source(p, is, y, x, iy, ix))
            acc[static_cast<size_t>((n * is.c + c) * is.plane() + iy * is.w + ix)] +=
                gout.plane(n, c)[y * os.w + x];
        }
  add_into(acc, gin);
}

void channel_shuffle_forward_ref(const Tensor& in, int64_t groups, Tensor& out) {
  const Shape& s = out.shape();
  const int64_t per = s.c / groups;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t j = 0; j < groups; ++j)
      for (int64_t k = 0; k < per; ++k)
        for (int64_t i = 0; i < s.plane(); ++i)
          out.plane(n, k * groups + j)[i] = in.plane(n, j * per + k)[i];
}

void channel_shuffle_backward_ref(const Tensor& gout, int64_t groups, Tensor& gin) {
  const Shape& s = gout.shape();
  const int64_t per = s.c / groups;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t j = 0; j < groups; ++j)
      for (int64_t k = 0; k < per; ++k)
        for (int64_t i = 0; i < s.plane(); ++i)
          gin.plane(n, j * per + k)[i] += gout.plane(n, k * groups + j)[i];
}

}  // namespace pydeconv::kernels
