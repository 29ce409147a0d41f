// Pooling kernels: max pooling that records switches, unpooling through them, average pooling.
// Parallel over (n, c) planes: each plane's scatter stays inside its plane, so no races.
//
// Fast max pooling works one output row at a time. Outputs whose window lies wholly inside the
// input columns (the interior) are computed a kernel row per pass: each pass folds KW inputs into
// the running (max, switch) of every output in the row, a loop over outputs the compiler
// vectorises (strict `>` keeps the first maximum, and the passes run in row-major window order,
// so ties and NaNs resolve exactly as in the reference). Windows that cross the left or right
// border take the general scalar path.
#include <algorithm>
#include <limits>

#include "dispatch.hpp"
#include "kernels/kernels.hpp"

#define PYDECONV_POOL_FN(name) name##_portable
#include "pool_fold.inc"
#undef PYDECONV_POOL_FN

namespace pydeconv::kernels {

namespace {

using PoolFold = decltype(KernelTable::pool_fold);

// The taps [k0, k1) of a window row or column starting at `base` (dilation d, k taps) that land
// inside [0, n), in window order: a window may be far larger than its input (a 65536-wide
// Darknet maxpool on a 32-pixel map), and visiting every tap to skip it took seconds.
inline void taps_inside(int64_t base, int64_t d, int64_t k, int64_t n, int64_t& k0, int64_t& k1) {
  k0 = base < 0 ? (-base + d - 1) / d : 0;
  k1 = base > n - 1 ? 0 : std::min(k, (n - 1 - base) / d + 1);
  if (k1 < k0) k1 = k0;
}

// The same with run-time width, stride and dilation (any other window).
void fold_row_any(const float* s, int64_t n, int32_t idx, int64_t kw, int64_t sw, int64_t dw,
                  bool first, float* best, int32_t* arg) {
  for (int64_t i = 0; i < n; ++i) {
    const float* r = s + i * sw;
    const int32_t at = idx + static_cast<int32_t>(i * sw);
    float b = first ? r[0] : best[i];
    int32_t a = first ? at : arg[i];
    for (int64_t kj = first ? 1 : 0; kj < kw; ++kj) {
      const float v = r[kj * dw];
      if (v > b) {
        b = v;
        a = at + static_cast<int32_t>(kj * dw);
      }
    }
    best[i] = b;
    arg[i] = a;
  }
}

// One output of a window that may cross the input's border: the definition, in window order.
void pool_one(const float* in, int64_t h, int64_t w, const Window2d& g, int64_t oy, int64_t ox,
              float* out, int32_t* sw) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t arg = -1;
  int64_t ki0, ki1, kj0, kj1;
  taps_inside(oy * g.sh - g.pt, g.dh, g.kh, h, ki0, ki1);
  taps_inside(ox * g.sw - g.pl, g.dw, g.kw, w, kj0, kj1);
  for (int64_t ki = ki0; ki < ki1; ++ki) {
    const int64_t iy = oy * g.sh - g.pt + ki * g.dh;
    for (int64_t kj = kj0; kj < kj1; ++kj) {
      const int64_t ix = ox * g.sw - g.pl + kj * g.dw;
      const float v = in[iy * w + ix];
      if (arg < 0 || v > best) {
        best = v;
        arg = iy * w + ix;
      }
    }
  }
  *out = best;
  *sw = static_cast<int32_t>(arg);
}

void max_pool_plane(const float* in, int64_t h, int64_t w, const Window2d& g, float* out,
                    int32_t* sw, int64_t oh, int64_t ow, PoolFold fold_fn) {
  // Interior outputs: ox * sw - pl >= 0 and ox * sw - pl + (kw - 1) * dw <= w - 1.
  const int64_t span = (g.kw - 1) * g.dw;
  const int64_t lo = std::min(ow, (g.pl + g.sw - 1) / g.sw);
  const int64_t hi = w - 1 - span + g.pl < 0 ? 0 : std::min(ow, (w - 1 - span + g.pl) / g.sw + 1);
  const int64_t n = std::max<int64_t>(0, hi - lo);
  // pool_fold's kinds (2x2/2, 3x3/2, 3x3/1, 5x5/1, 2x2/1), -1 for any other window.
  const int kind = g.dw != 1                ? -1
                   : g.kw == 2 && g.sw == 2 ? 0
                   : g.kw == 3 && g.sw == 2 ? 1
                   : g.kw == 3 && g.sw == 1 ? 2
                   : g.kw == 5 && g.sw == 1 ? 3
                   : g.kw == 2 && g.sw == 1 ? 4
                                            : -1;
  for (int64_t oy = 0; oy < oh; ++oy) {
    float* orow = out + oy * ow;
    int32_t* srow = sw + oy * ow;
    for (int64_t ox = 0; ox < std::min(lo, ow); ++ox)
      pool_one(in, h, w, g, oy, ox, orow + ox, srow + ox);
    for (int64_t ox = std::max(lo, hi); ox < ow; ++ox)
      pool_one(in, h, w, g, oy, ox, orow + ox, srow + ox);
    if (n == 0) continue;
    bool first = true;
    int64_t ki0, ki1;
    taps_inside(oy * g.sh - g.pt, g.dh, g.kh, h, ki0, ki1);  // padding rows never win
    for (int64_t ki = ki0; ki < ki1; ++ki) {
      const int64_t iy = oy * g.sh - g.pt + ki * g.dh;
      const int64_t x0 = lo * g.sw - g.pl;
      const float* s = in + iy * w + x0;
      const int32_t idx = static_cast<int32_t>(iy * w + x0);
      if (kind >= 0)
        fold_fn(kind, s, n, idx, first, orow + lo, srow + lo);
      else
        fold_row_any(s, n, idx, g.kw, g.sw, g.dw, first, orow + lo, srow + lo);
      first = false;
    }
    if (first) {  // a dilated window can straddle a small input: nothing inside, no switch
      std::fill(orow + lo, orow + lo + n, -std::numeric_limits<float>::infinity());
      std::fill(srow + lo, srow + lo + n, -1);
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

// Below this many window reads a pooling call stays on one thread (a fork costs ~10 us).
constexpr int64_t kParallelWork = 1 << 15;

}  // namespace

void max_pool2d_forward(const Ctx& ctx, const Tensor& in, const Window2d& g, Tensor& out,
                        IndexTensor& switches) {
  if (ctx.reference) return max_pool2d_forward_ref(in, g, out, switches);
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int64_t planes = is.n * is.c;
  const bool par = ctx.threads > 1 && planes > 1 && os.numel() * g.kh * g.kw > kParallelWork;
  const PoolFold fold = kernel_table().pool_fold;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
  for (int64_t p = 0; p < planes; ++p)
    max_pool_plane(in.data() + p * is.plane(), is.h, is.w, g, out.data() + p * os.plane(),
                   switches.data() + p * os.plane(), os.h, os.w, fold);
}

void max_unpool2d(const Ctx& ctx, const Tensor& gout, const Regions& rs,
                  const IndexTensor& switches, Tensor& gin, int64_t reps, const Window2d* tiling) {
  if (ctx.reference) {
    if (tiling != nullptr) gin.zero();
    return max_unpool2d_ref(gout, switches, gin, reps);
  }
  const Shape& gs = gout.shape();
  const int64_t c = gs.c, op = gs.plane(), ip = gin.shape().plane();
  const int64_t ih = gin.shape().h, iw = gin.shape().w;
  const int64_t planes = gs.n * c;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t b = p / c, ch = p % c;
    const Region& r = rs[b];
    const float* g = gout.data() + p * op;
    const int32_t* sw = switches.plane(b / reps, ch);
    float* d = gin.data() + p * ip;
    if (tiling != nullptr) {
      // Each region row's windows tile their input rows: zero them, then put each value at its
      // switch (no two windows share an element, so no sums).
      const Window2d& t = *tiling;
      if (r.empty()) continue;
      const int64_t x0 = std::max<int64_t>(0, r.x0 * t.sw - t.pl);
      const int64_t x1 = std::min(iw, (r.x1 - 1) * t.sw - t.pl + t.kw);
      for (int64_t oy = r.y0; oy < r.y1; ++oy) {
        const int64_t y0 = std::max<int64_t>(0, oy * t.sh - t.pt),
                      y1 = std::min(ih, oy * t.sh - t.pt + t.kh);
        for (int64_t y = y0; y < y1; ++y) std::fill(d + y * iw + x0, d + y * iw + x1, 0.0f);
        for (int64_t ox = r.x0; ox < r.x1; ++ox) {
          const int64_t i = oy * gs.w + ox;
          if (sw[i] >= 0) d[sw[i]] = g[i];
        }
      }
      continue;
    }
    // Only the region may be non-zero; overlapping windows sharing a switch sum (the gradient).
    for (int64_t oy = r.y0; oy < r.y1; ++oy)
      for (int64_t ox = r.x0; ox < r.x1; ++ox) {
        const int64_t i = oy * gs.w + ox;
        if (sw[i] >= 0) d[sw[i]] += g[i];
      }
  }
}

void avg_pool2d_forward(const Ctx& ctx, const Tensor& in, const Window2d& g, bool count_include_pad,
                        Tensor& out) {
  if (ctx.reference) return avg_pool2d_forward_ref(in, g, count_include_pad, out);
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
        int64_t ki0, ki1, kj0, kj1;
        taps_inside(oy * g.sh - g.pt, 1, g.kh, is.h, ki0, ki1);
        taps_inside(ox * g.sw - g.pl, 1, g.kw, is.w, kj0, kj1);
        for (int64_t ki = ki0; ki < ki1; ++ki) {
          const int64_t iy = oy * g.sh - g.pt + ki;
          for (int64_t kj = kj0; kj < kj1; ++kj) {
            const int64_t ix = ox * g.sw - g.pl + kj;
            acc += src[iy * is.w + ix];
          }
        }
        dst[oy * os.w + ox] =
            static_cast<float>(acc / double(avg_count(g, is.h, is.w, oy, ox, count_include_pad)));
      }
  }
}

void avg_pool2d_backward(const Ctx& ctx, const Tensor& gout, const Window2d& g,
                         bool count_include_pad, Tensor& gin) {
  if (ctx.reference) return avg_pool2d_backward_ref(gout, g, count_include_pad, gin);
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
        int64_t ki0, ki1, kj0, kj1;
        taps_inside(oy * g.sh - g.pt, 1, g.kh, is.h, ki0, ki1);
        taps_inside(ox * g.sw - g.pl, 1, g.kw, is.w, kj0, kj1);
        for (int64_t ki = ki0; ki < ki1; ++ki) {
          const int64_t iy = oy * g.sh - g.pt + ki;
          for (int64_t kj = kj0; kj < kj1; ++kj) {
            const int64_t ix = ox * g.sw - g.pl + kj;
            dst[iy * is.w + ix] += share;
          }
        }
      }
  }
}

}  // namespace pydeconv::kernels
