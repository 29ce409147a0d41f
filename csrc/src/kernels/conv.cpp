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

// One row of a gradient region: sample b, output row oy, columns [x0, x1), stored from column
// `col` of the current tile.
struct RowSeg {
  int64_t b, oy, x0, x1, col;
};

// gin += col2im(col) for a tile of row segments; parallel over channels, so no two threads ever
// write the same plane.
void col2im_rows(const float* col, int64_t ncols, const RowSeg* rows, size_t nrows, int64_t c0,
                 int64_t cg, const Shape& is, const Window2d& g, Tensor& gin, int threads) {
  const int64_t kk = g.kh * g.kw, h = is.h, w = is.w;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t c = 0; c < cg; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const float* src = col + (c * kk + ki * g.kw + kj) * ncols;
        for (size_t k = 0; k < nrows; ++k) {
          const RowSeg& r = rows[k];
          const int64_t iy = r.oy * g.sh - g.pt + ki * g.dh;
          if (iy < 0 || iy >= h) continue;
          float* d = gin.plane(r.b, c0 + c) + iy * w;
          const float* sp = src + r.col - r.x0;
          for (int64_t ox = r.x0; ox < r.x1; ++ox) {
            const int64_t ix = ox * g.sw - g.pl + kj * g.dw;
            if (ix >= 0 && ix < w) d[ix] += sp[ox];
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

void conv2d_backward(const Ctx& ctx, const Tensor& gout, const Regions& rs, const Tensor& weight,
                     const Window2d& g, int64_t groups, Tensor& gin) {
  if (ctx.reference) return conv2d_backward_ref(gout, weight, g, groups, gin, 1);
  const Shape& gs = gout.shape();
  const Shape& is = gin.shape();
  const int64_t cg = is.c / groups, ocg = gs.c / groups, krows = cg * g.kh * g.kw;
  std::vector<RowSeg> rows;
  int64_t widest = 1;
  for (int64_t b = 0; b < gs.n; ++b) {
    const Region& r = rs[b];
    if (r.empty()) continue;
    widest = std::max(widest, r.x1 - r.x0);
    for (int64_t oy = r.y0; oy < r.y1; ++oy) rows.push_back({b, oy, r.x0, r.x1, 0});
  }
  if (rows.empty()) return;
  const int64_t max_cols = std::max(widest, kColBudget / std::max(krows, ocg));
  std::vector<float> col, gbuf;
  for (int64_t gi = 0; gi < groups; ++gi) {
    const float* wg = weight.data() + gi * ocg * krows;
    for (size_t i = 0; i < rows.size();) {
      // The next tile: as many whole row segments as fit the column budget.
      size_t j = i;
      int64_t ncols = 0;
      while (j < rows.size() && (j == i || ncols + (rows[j].x1 - rows[j].x0) <= max_cols)) {
        rows[j].col = ncols;
        ncols += rows[j].x1 - rows[j].x0;
        ++j;
      }
      gbuf.resize(static_cast<size_t>(ocg * ncols));
      col.resize(static_cast<size_t>(krows * ncols));
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1 && ocg > 1)
      for (int64_t oc = 0; oc < ocg; ++oc)
        for (size_t k = i; k < j; ++k) {
          const RowSeg& r = rows[k];
          const float* src = gout.plane(r.b, gi * ocg + oc) + r.oy * gs.w;
          std::copy(src + r.x0, src + r.x1, gbuf.data() + oc * ncols + r.col);
        }
      kernels::sgemm(true, false, krows, ncols, ocg, wg, krows, gbuf.data(), ncols, col.data(),
                     ncols, false, ctx.threads);
      col2im_rows(col.data(), ncols, rows.data() + i, j - i, gi * cg, cg, is, g, gin, ctx.threads);
      i = j;
    }
  }
}

}  // namespace pydeconv::kernels
