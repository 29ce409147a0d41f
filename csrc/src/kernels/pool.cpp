// Pooling kernels: max pooling that records switches, unpooling through them, average pooling.
// Parallel over (n, c) planes: each plane's scatter stays inside its plane, so no races.
#include <algorithm>
#include <limits>

#include "pydeconv/kernels.hpp"

namespace pydeconv::kernels {
namespace {

// One plane of max pooling; `switches` gets ih * W + iw of the first maximum in row-major order.
void max_pool_plane(const float* in, int64_t h, int64_t w, const Window2d& g, float* out,
                    int32_t* sw, int64_t oh, int64_t ow) {
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t y0 = oy * g.sh - g.pt;
    for (int64_t ox = 0; ox < ow; ++ox) {
      const int64_t x0 = ox * g.sw - g.pl;
      float best = -std::numeric_limits<float>::infinity();
      int64_t arg = -1;
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        const int64_t iy = y0 + ki * g.dh;
        if (iy < 0 || iy >= h) continue;
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const int64_t ix = x0 + kj * g.dw;
          if (ix < 0 || ix >= w) continue;
          const float v = in[iy * w + ix];
          // Strictly greater keeps the first maximum; `arg < 0` admits -inf and NaN inputs.
          if (arg < 0 || v > best) {
            best = v;
            arg = iy * w + ix;
          }
        }
      }
      out[oy * ow + ox] = best;
      sw[oy * ow + ox] = static_cast<int32_t>(arg);
    }
  }
}

// The window's element count for average pooling.
int64_t avg_count(const Window2d& g, int64_t h, int64_t w, int64_t oy, int64_t ox, bool with_pad) {
  int64_t y0 = oy * g.sh - g.pt, x0 = ox * g.sw - g.pl;
  int64_t y1 = y0 + g.kh, x1 = x0 + g.kw;
  if (with_pad) {
    y1 = std::min(y1, h + g.pb);
    x1 = std::min(x1, w + g.pr);
  } else {
    y0 = std::max<int64_t>(y0, 0);
    x0 = std::max<int64_t>(x0, 0);
    y1 = std::min(y1, h);
    x1 = std::min(x1, w);
  }
  return std::max<int64_t>(1, (y1 - y0) * (x1 - x0));
}

}  // namespace

void max_pool2d_forward(const Ctx& ctx, const Tensor& in, const Window2d& g, Tensor& out,
                        IndexTensor& switches) {
  if (ctx.reference) return max_pool2d_forward_ref(in, g, out, switches);
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int64_t planes = is.n * is.c;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p)
    max_pool_plane(in.data() + p * is.plane(), is.h, is.w, g, out.data() + p * os.plane(),
                   switches.data() + p * os.plane(), os.h, os.w);
}

void max_pool2d_forward_ref(const Tensor& in, const Window2d& g, Tensor& out,
                            IndexTensor& switches) {
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  for (int64_t p = 0; p < is.n * is.c; ++p)
    max_pool_plane(in.data() + p * is.plane(), is.h, is.w, g, out.data() + p * os.plane(),
                   switches.data() + p * os.plane(), os.h, os.w);
}

void max_unpool2d(const Ctx& ctx, const Tensor& gout, const Regions& rs, const IndexTensor& switches,
                  Tensor& gin, int64_t reps) {
  if (ctx.reference) return max_unpool2d_ref(gout, switches, gin, reps);
  const Shape& gs = gout.shape();
  const int64_t c = gs.c, op = gs.plane(), ip = gin.shape().plane();
  const int64_t planes = gs.n * c;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t b = p / c, ch = p % c;
    const Region& r = rs[b];
    const float* g = gout.data() + p * op;
    const int32_t* sw = switches.plane(b / reps, ch);
    float* d = gin.data() + p * ip;
    for (int64_t oy = r.y0; oy < r.y1; ++oy)
      for (int64_t ox = r.x0; ox < r.x1; ++ox) {
        const int64_t i = oy * gs.w + ox;
        if (sw[i] >= 0) d[sw[i]] += g[i];
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

void avg_pool2d_forward(const Ctx& ctx, const Tensor& in, const Window2d& g, bool count_include_pad,
                        Tensor& out) {
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int64_t planes = is.n * is.c;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = in.data() + p * is.plane();
    float* dst = out.data() + p * os.plane();
    for (int64_t oy = 0; oy < os.h; ++oy)
      for (int64_t ox = 0; ox < os.w; ++ox) {
        double acc = 0.0;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t iy = oy * g.sh - g.pt + ki;
          if (iy < 0 || iy >= is.h) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t ix = ox * g.sw - g.pl + kj;
            if (ix >= 0 && ix < is.w) acc += src[iy * is.w + ix];
          }
        }
        dst[oy * os.w + ox] =
            static_cast<float>(acc / double(avg_count(g, is.h, is.w, oy, ox, count_include_pad)));
      }
  }
}

void avg_pool2d_backward(const Ctx& ctx, const Tensor& gout, const Window2d& g,
                         bool count_include_pad, Tensor& gin) {
  const Shape& gs = gout.shape();
  const Shape& is = gin.shape();
  const int64_t planes = gs.n * gs.c;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = gout.data() + p * gs.plane();
    float* dst = gin.data() + p * is.plane();
    for (int64_t oy = 0; oy < gs.h; ++oy)
      for (int64_t ox = 0; ox < gs.w; ++ox) {
        const float v = src[oy * gs.w + ox];
        if (v == 0.f) continue;
        const float share = v / float(avg_count(g, is.h, is.w, oy, ox, count_include_pad));
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t iy = oy * g.sh - g.pt + ki;
          if (iy < 0 || iy >= is.h) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t ix = ox * g.sw - g.pl + kj;
            if (ix >= 0 && ix < is.w) dst[iy * is.w + ix] += share;
          }
        }
      }
  }
}

}  // namespace pydeconv::kernels
