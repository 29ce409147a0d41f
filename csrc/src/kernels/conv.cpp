// conv2d as im2col + GEMM, tiled over output rows so the column buffer stays small; the
// transposed convolution as GEMM (W^T * gout) + col2im over the region that can be non-zero.
#include <algorithm>
#include <vector>

#include "pydeconv/gemm.hpp"
#include "pydeconv/kernels.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kColBudget = 1 << 20;  // floats per column buffer (4 MiB)

// Rows of the column matrix for output rows [oy0, oy1) and columns [ox0, ox1) of one group.
void im2col(const float* in, int64_t c0, int64_t cg, int64_t h, int64_t w, const Window2d& g,
            int64_t oy0, int64_t oy1, int64_t ox0, int64_t ox1, float* col, int threads) {
  const int64_t rows = cg * g.kh * g.kw, pw = ox1 - ox0, pn = (oy1 - oy0) * pw;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = c0 + r / (g.kh * g.kw), ki = r / g.kw % g.kh, kj = r % g.kw;
    const float* plane = in + c * h * w;
    float* dst = col + r * pn;
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int64_t iy = oy * g.sh - g.pt + ki * g.dh;
      float* d = dst + (oy - oy0) * pw;
      if (iy < 0 || iy >= h) {
        std::fill(d, d + pw, 0.f);
        continue;
      }
      const float* src = plane + iy * w;
      for (int64_t ox = ox0; ox < ox1; ++ox) {
        const int64_t ix = ox * g.sw - g.pl + kj * g.dw;
        d[ox - ox0] = (ix >= 0 && ix < w) ? src[ix] : 0.f;
      }
    }
  }
}

// gin += col2im(col) for the same tile; parallel over channels, so no two threads share a plane.
void col2im(const float* col, int64_t c0, int64_t cg, int64_t h, int64_t w, const Window2d& g,
            int64_t oy0, int64_t oy1, int64_t ox0, int64_t ox1, float* gin, int threads) {
  const int64_t pw = ox1 - ox0, pn = (oy1 - oy0) * pw, kk = g.kh * g.kw;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t c = 0; c < cg; ++c) {
    float* plane = gin + (c0 + c) * h * w;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const float* src = col + (c * kk + ki * g.kw + kj) * pn;
        for (int64_t oy = oy0; oy < oy1; ++oy) {
          const int64_t iy = oy * g.sh - g.pt + ki * g.dh;
          if (iy < 0 || iy >= h) continue;
          float* d = plane + iy * w;
          const float* s = src + (oy - oy0) * pw;
          for (int64_t ox = ox0; ox < ox1; ++ox) {
            const int64_t ix = ox * g.sw - g.pl + kj * g.dw;
            if (ix >= 0 && ix < w) d[ix] += s[ox - ox0];
          }
        }
      }
    }
  }
}

bool is_pointwise(const Window2d& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 &&
         g.pb == 0 && g.pr == 0;
}

int64_t rows_per_tile(int64_t k_rows, int64_t width, int64_t height) {
  int64_t per_row = std::max<int64_t>(1, k_rows * width);
  return std::clamp<int64_t>(kColBudget / per_row, 1, height);
}

}  // namespace

void conv2d_forward(const Ctx& ctx, const Tensor& in, const Tensor& weight, const float* bias,
                    const Window2d& g, int64_t groups, Tensor& out) {
  if (ctx.reference) return conv2d_forward_ref(in, weight, bias, g, groups, out);
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int64_t cg = is.c / groups, ocg = os.c / groups, krows = cg * g.kh * g.kw;
  const int64_t oh = os.h, ow = os.w, p = oh * ow;
  const bool pointwise = is_pointwise(g);
  const int64_t tile = pointwise ? oh : rows_per_tile(krows, ow, oh);
  std::vector<float> col(pointwise ? 0 : static_cast<size_t>(krows * tile * ow));
  for (int64_t n = 0; n < is.n; ++n) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* wg = weight.data() + gi * ocg * krows;
      float* og = out.plane(n, gi * ocg);
      if (pointwise) {
        kernels::sgemm(false, false, ocg, p, krows, wg, krows, in.plane(n, gi * cg), p, og, p,
                       false, ctx.threads);
        continue;
      }
      for (int64_t oy0 = 0; oy0 < oh; oy0 += tile) {
        const int64_t oy1 = std::min(oh, oy0 + tile), pn = (oy1 - oy0) * ow;
        im2col(in.sample(n), gi * cg, cg, is.h, is.w, g, oy0, oy1, 0, ow, col.data(), ctx.threads);
        kernels::sgemm(false, false, ocg, pn, krows, wg, krows, col.data(), pn, og + oy0 * ow, p,
                       false, ctx.threads);
      }
    }
    if (bias) {
      float* o = out.sample(n);
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
      for (int64_t c = 0; c < os.c; ++c)
        for (int64_t i = 0; i < p; ++i) o[c * p + i] += bias[c];
    }
  }
}

void conv2d_backward(const Ctx& ctx, const Tensor& gout, const Region& r, const Tensor& weight,
                     const Window2d& g, int64_t groups, Tensor& gin) {
  if (ctx.reference) return conv2d_backward_ref(gout, weight, g, groups, gin, 1);
  if (r.empty()) return;
  const Shape& gs = gout.shape();
  const Shape& is = gin.shape();
  const int64_t cg = is.c / groups, ocg = gs.c / groups, krows = cg * g.kh * g.kw;
  const int64_t rw = r.x1 - r.x0, rh = r.y1 - r.y0;
  const int64_t tile = rows_per_tile(std::max(krows, ocg), rw, rh);
  std::vector<float> col(static_cast<size_t>(krows * tile * rw));
  std::vector<float> gbuf(static_cast<size_t>(ocg * tile * rw));
  for (int64_t n = 0; n < gs.n; ++n) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* wg = weight.data() + gi * ocg * krows;
      for (int64_t oy0 = r.y0; oy0 < r.y1; oy0 += tile) {
        const int64_t oy1 = std::min(r.y1, oy0 + tile), pn = (oy1 - oy0) * rw;
        // Gather the gradient tile into a dense (ocg x pn) matrix.
        for (int64_t oc = 0; oc < ocg; ++oc) {
          const float* src = gout.plane(n, gi * ocg + oc);
          for (int64_t oy = oy0; oy < oy1; ++oy)
            std::copy(src + oy * gs.w + r.x0, src + oy * gs.w + r.x1,
                      gbuf.data() + oc * pn + (oy - oy0) * rw);
        }
        kernels::sgemm(true, false, krows, pn, ocg, wg, krows, gbuf.data(), pn, col.data(), pn,
                       false, ctx.threads);
        col2im(col.data(), gi * cg, cg, is.h, is.w, g, oy0, oy1, r.x0, r.x1, gin.sample(n),
               ctx.threads);
      }
    }
  }
}

}  // namespace pydeconv::kernels
