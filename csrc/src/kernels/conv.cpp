// conv2d as one GEMM per sample and group, out = W * im2col(in) + bias, with the im2col done
// inside the GEMM's B packing (Im2colPanels) and the weights pre-packed.
//
// The transposed convolution (the projection's way down), gin += W^T * gout:
// - stride 1: it is itself a convolution of gout, with the filters flipped in space, in/out
//   channels swapped and padding d*(k-1) - p. It runs as that forward conv restricted to the
//   input region each sample's gout region reaches, all samples' regions in one GEMM, with no
//   col2im at all (only a cheap add of the result into gin);
// - strided: GEMM (W^T * gout rows) + col2im, where col2im sums the overlapping windows.
#include <algorithm>
#include <vector>

#include "direct_conv.hpp"
#include "im2col_panels.hpp"
#include "kernels/gemm.hpp"
#include "kernels/kernels.hpp"
#include "pydeconv/error.hpp"
#include "winograd.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kBufBudget = 1 << 21;  // floats per GEMM result / column buffer (8 MiB)

// Which way the transposed conv runs. The flipped-kernel forward conv has m = C/groups GEMM rows:
// with fewer than a micro-tile's 6 (the projection's last step, to 3 RGB channels) most of each
// micro-kernel call is padding and every packed B panel serves one call, so GEMM + col2im
// (m = C/groups * KH * KW rows) is faster there, as it is for strided convs.
bool flipped_backward(const Window2d& g, int64_t cg) { return g.sh == 1 && g.sw == 1 && cg >= 6; }

// The transposed conv of a stride-1 conv as a forward conv: same sizes and dilation, the
// padding that maps each input position back onto the outputs it fed.
Window2d transposed_window(const Window2d& g) {
  Window2d t = g;
  t.pt = g.dh * (g.kh - 1) - g.pt;
  t.pl = g.dw * (g.kw - 1) - g.pl;
  t.pb = g.dh * (g.kh - 1) - g.pb;
  t.pr = g.dw * (g.kw - 1) - g.pr;
  return t;
}

// The gin rectangle a stride-1 conv's gout region r reaches: gin row y reads gout rows
// y - t.pt .. y - t.pt + (kh - 1) * dh (t: the transposed window). Empty if it falls outside.
Region reachable_input(const Region& r, const Window2d& g, const Window2d& t, const Shape& is) {
  return {std::max<int64_t>(0, r.y0 - g.pt), std::min(is.h, r.y1 + t.pt),
          std::max<int64_t>(0, r.x0 - g.pl), std::min(is.w, r.x1 + t.pl)};
}

// --- strided transposed conv: GEMM + col2im over the rows of the gout regions ---

// One row of a gradient region: sample b, output row oy, columns [x0, x1), stored from column
// `col` of the current tile.
struct RowSeg {
  int64_t b, oy, x0, x1, col;
};

// gin += col2im(col) for a tile of row segments. Tasks own a channel and a band of gin rows, so
// no two threads ever write the same row, and the work splits evenly even over few channels
// (3 RGB channels on 2 threads: the projection's last step).
void col2im_rows(const float* col, int64_t ncols, const RowSeg* rows, size_t nrows, int64_t c0,
                 int64_t cg, const Shape& is, const Window2d& g, Tensor& gin, int threads) {
  const int64_t kk = g.kh * g.kw, h = is.h, w = is.w;
  const int64_t bands = std::min<int64_t>(h, threads > 1 ? 8 * threads : 1), tasks = cg * bands;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t c = task / bands, band = task % bands;
    const int64_t y0 = h * band / bands, y1 = h * (band + 1) / bands;
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const float* src = col + (c * kk + ki * g.kw + kj) * ncols;
        const int64_t off = kj * g.dw - g.pl;  // ix = ox * sw + off
        // Outputs whose ix falls inside the row: ox in [ceil(-off / sw), ceil((w - off) / sw)).
        const int64_t lo = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
        const int64_t hi = w - off <= 0 ? 0 : (w - off + g.sw - 1) / g.sw;
        for (size_t k = 0; k < nrows; ++k) {
          const RowSeg& r = rows[k];
          const int64_t iy = r.oy * g.sh - g.pt + ki * g.dh;
          if (iy < y0 || iy >= y1) continue;
          float* d = gin.plane(r.b, c0 + c) + iy * w;
          const float* sp = src + r.col - r.x0;
          const int64_t x0 = std::max(r.x0, lo), x1 = std::min(r.x1, hi);
          if (g.sw == 1) {
            for (int64_t ox = x0; ox < x1; ++ox) d[ox + off] += sp[ox];
          } else {
            for (int64_t ox = x0; ox < x1; ++ox) d[ox * g.sw + off] += sp[ox];
          }
        }
      }
  }
}

void backward_col2im(const Ctx& ctx, const Tensor& gout, const Regions& rs, const ConvPacked& pk,
                     const Window2d& g, int64_t groups, Tensor& gin) {
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
  const int64_t max_cols = std::max(widest, kBufBudget / std::max(krows, ocg));
  std::vector<float> col, gbuf;
  for (int64_t gi = 0; gi < groups; ++gi) {
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
      sgemm_packed(pk.groups[gi], false, ncols, gbuf.data(), ncols, col.data(), ncols, false,
                   ctx.threads);
      col2im_rows(col.data(), ncols, rows.data() + i, j - i, gi * cg, cg, is, g, gin, ctx.threads);
      i = j;
    }
  }
}

// --- a forward conv over rectangles of its output, reading its input inside regions ---

// dst (+)= conv(src) with window `win` and the A of `pk` (dst channels per group x src channels
// per group * KH * KW), over each sample's rectangle out[b] of dst, reading src only inside its
// region rs[b] (outside it reads zeros). All samples' rectangles share GEMMs.
void conv_rects(const Ctx& ctx, const Tensor& src, const Regions& rs, const Regions& out,
                const ConvPacked& pk, const Window2d& win, int64_t groups, Tensor& dst,
                bool overwrite) {
  const Shape& gs = src.shape();
  const Shape& is = dst.shape();
  const int64_t cg = is.c / groups, ocg = gs.c / groups;
  // Each sample's dst rectangle, split by rows into pieces of at most `budget` columns; pieces
  // are then grouped into GEMMs of at most `budget` columns.
  const int64_t budget = std::max<int64_t>(kSgemmNR, kBufBudget / cg);
  struct Piece {
    int64_t b, y0, y1, x0, x1;
  };
  std::vector<Piece> pieces;
  for (int64_t b = 0; b < gs.n; ++b) {
    if (rs[b].empty()) continue;
    const Region& in = out[b];
    if (in.empty()) continue;
    const int64_t y0 = in.y0, y1 = in.y1, x0 = in.x0, x1 = in.x1;
    const int64_t step = std::max<int64_t>(1, budget / (x1 - x0));
    for (int64_t y = y0; y < y1; y += step)
      pieces.push_back({b, y, std::min(y1, y + step), x0, x1});
  }
  std::vector<float> buf;
  for (size_t i = 0; i < pieces.size();) {
    size_t j = i;
    int64_t ncols = 0;
    while (j < pieces.size()) {
      const Piece& q = pieces[j];
      const int64_t cols = (q.y1 - q.y0) * (q.x1 - q.x0);
      if (j > i && ncols + cols > budget) break;
      ncols += cols;
      ++j;
    }
    buf.resize(static_cast<size_t>(cg * ncols));
    for (int64_t gi = 0; gi < groups; ++gi) {
      std::vector<ColRect> rects;
      int64_t col0 = 0;
      for (size_t k = i; k < j; ++k) {
        const Piece& q = pieces[k];
        const Region& r = rs[q.b];
        rects.push_back({src.plane(q.b, gi * ocg), q.y0, q.x0, q.y1 - q.y0, q.x1 - q.x0, col0, r.y0,
                         r.y1, r.x0, r.x1});
        col0 += (q.y1 - q.y0) * (q.x1 - q.x0);
      }
      const Im2colPanels panels(win, ocg, gs.h, gs.w, std::move(rects));
      sgemm_packed_panels(pk.groups[gi], ncols, panels, nullptr, buf.data(), ncols, false,
                          ctx.threads);
      // dst += (or =) the result, rectangle rows at a time; parallel over channels (disjoint
      // planes).
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
      for (int64_t c = 0; c < cg; ++c) {
        const float* from = buf.data() + c * ncols;
        for (size_t k = i; k < j; ++k) {
          const Piece& q = pieces[k];
          float* plane = dst.plane(q.b, gi * cg + c);
          for (int64_t y = q.y0; y < q.y1; ++y, from += q.x1 - q.x0) {
            float* d = plane + y * is.w;
            if (overwrite)
              std::copy(from, from + (q.x1 - q.x0), d + q.x0);
            else
              for (int64_t x = q.x0; x < q.x1; ++x) d[x] += from[x - q.x0];
          }
        }
      }
    }
    i = j;
  }
}

// --- stride-1 transposed conv: a forward conv of gout over the reachable input regions ---

void backward_unit_stride(const Ctx& ctx, const Tensor& gout, const Regions& rs,
                          const ConvPacked& pk, const Window2d& g, int64_t groups, Tensor& gin,
                          bool overwrite) {
  const Window2d t = transposed_window(g);
  Regions reach(rs.size());
  for (size_t b = 0; b < rs.size(); ++b)
    if (!rs[b].empty()) reach[b] = reachable_input(rs[b], g, t, gin.shape());
  conv_rects(ctx, gout, rs, reach, pk, t, groups, gin, overwrite);
}

}  // namespace

ConvPacked conv2d_pack_forward(const Tensor& weight, int64_t groups) {
  const Shape& ws = weight.shape();
  const int64_t ocg = ws.n / groups, krows = ws.c * ws.h * ws.w;
  ConvPacked out;
  for (int64_t gi = 0; gi < groups; ++gi)
    out.groups.push_back(pack_a(false, ocg, krows, weight.data() + gi * ocg * krows, krows));
  if (direct_conv_fits(ws, Window2d{}, groups)) out.direct = direct_conv_pack(weight);
  if (depthwise_weights_fit(ws, groups))
    out.depthwise.assign(weight.data(), weight.data() + ws.numel());
  return out;
}

ConvPacked conv2d_pack_backward(const Tensor& weight, const Window2d& g, int64_t groups) {
  const Shape& ws = weight.shape();
  const int64_t ocg = ws.n / groups, cg = ws.c, kk = ws.h * ws.w, krows = cg * kk;
  ConvPacked out;
  if (depthwise_weights_fit(ws, groups))
    out.depthwise.assign(weight.data(), weight.data() + ws.numel());
  std::vector<float> flipped;
  for (int64_t gi = 0; gi < groups; ++gi) {
    const float* wg = weight.data() + gi * ocg * krows;
    if (!flipped_backward(g, cg)) {
      out.groups.push_back(pack_a(true, krows, ocg, wg, krows));
      continue;
    }
    // flipped[c][oc][t] = W[oc][c][kk - 1 - t]: tap t of the flipped kernel is tap kk-1-t.
    flipped.resize(static_cast<size_t>(cg * ocg * kk));
    for (int64_t c = 0; c < cg; ++c)
      for (int64_t oc = 0; oc < ocg; ++oc)
        for (int64_t tp = 0; tp < kk; ++tp)
          flipped[(c * ocg + oc) * kk + tp] = wg[(oc * cg + c) * kk + (kk - 1 - tp)];
    out.groups.push_back(pack_a(false, cg, ocg * kk, flipped.data(), ocg * kk));
  }
  return out;
}

void conv2d_forward(const Ctx& ctx, const Tensor& in, const Tensor& weight, const float* bias,
                    const Window2d& g, int64_t groups, Tensor& out, const ConvPacked* packed,
                    Tensor* relu_out, TensorT<uint8_t>* relu_mask) {
  if (ctx.reference) {
    conv2d_forward_ref(in, weight, bias, g, groups, out);
    // The fused ReLU as its own pass here; the fast paths apply it as they write each output
    // (Winograd's output transform, the GEMM's epilogue).
    if (relu_out != nullptr)
      relu_forward(ctx, out.data(), relu_out->data(), relu_mask ? relu_mask->data() : nullptr,
                   out.numel());
    return;
  }
  ConvPacked local;
  if (packed == nullptr) local = conv2d_pack_forward(weight, groups), packed = &local;
  if (!packed->depthwise.empty() && depthwise_fits(weight.shape(), g, groups) &&
      depthwise_enabled())
    return depthwise_forward(ctx, in, packed->depthwise.data(), bias, g, out, relu_out, relu_mask);
  // Forced Winograd (modes 2 and 4, for tests and benchmarks) keeps every conv it applies to.
  if (!packed->direct.empty() && direct_conv_fits(weight.shape(), g, groups) &&
      !(winograd_mode() >= 2 && winograd_geometry(g, groups)))
    return direct_conv_forward(ctx, in, packed->direct, bias, g, out, relu_out, relu_mask);
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int64_t cg = is.c / groups, ocg = os.c / groups, p = os.h * os.w;
  // The kernel is chosen for one sample, whatever the batch: a batch's outputs are then the bits
  // of the same samples run one at a time (the cost model's filter term, amortised over more
  // tiles, would otherwise pick F(4x4) or Winograd at some batch sizes and not at others).
  WinoCount count;
  count.add(os.h, os.w);
  const int tile = winograd_geometry(g, groups) ? winograd_tile(os.c, is.c, count) : 0;
  if (tile != 0) {
    std::vector<WinoRect> rects;
    for (int64_t n = 0; n < is.n; ++n) {
      rects.push_back({in.plane(n, 0), out.plane(n, 0), 0, os.h, 0, os.w, 0, is.h, 0, is.w});
      if (relu_out != nullptr) rects.back().relu_dst = relu_out->plane(n, 0);
      if (relu_mask != nullptr) rects.back().mask = relu_mask->plane(n, 0);
    }
    WinoConv wc;
    wc.k_ch = is.c, wc.m_ch = os.c, wc.sh = is.h, wc.sw = is.w, wc.dh = os.h, wc.dw = os.w;
    wc.pt = g.pt, wc.pl = g.pl, wc.bias = bias, wc.tile = tile, wc.cache = packed->wino.get();
    return winograd_conv3x3(ctx, wc, packed->groups[0], rects);
  }
  // The ReLU (and its mask) on each output tile as the GEMM finishes it.
  for (int64_t n = 0; n < is.n; ++n)
    for (int64_t gi = 0; gi < groups; ++gi) {
      const ColRect rect{in.plane(n, gi * cg), 0, 0, os.h, os.w, 0, 0, is.h, 0, is.w};
      const Im2colPanels panels(g, cg, is.h, is.w, {rect});
      ReluEpilogue relu;
      if (relu_out != nullptr) {
        relu.out = relu_out->plane(n, gi * ocg);
        if (relu_mask != nullptr) relu.mask = relu_mask->plane(n, gi * ocg);
      }
      sgemm_packed_panels(packed->groups[gi], p, panels, bias ? bias + gi * ocg : nullptr,
                          out.plane(n, gi * ocg), p, false, ctx.threads,
                          relu_out != nullptr ? &relu : nullptr);
    }
}

bool conv2d_backward_overwrites(const Window2d& g, int64_t cg) { return flipped_backward(g, cg); }

bool conv2d_backward_winograd(const Ctx& ctx, const Tensor& gout, const Regions& rs,
                              const Window2d& g, int64_t groups, Tensor& gin,
                              const ConvPacked& forward, bool overwrite, const Regions* choose_by) {
  if (ctx.reference || !winograd_geometry(g, groups)) return false;
  const Shape& gs = gout.shape();
  const Shape& is = gin.shape();
  const Window2d t = transposed_window(g);
  std::vector<WinoRect> rects;
  WinoCount count;
  for (int64_t b = 0; b < gs.n; ++b) {
    const Region& r = rs[b];
    if (r.empty()) continue;
    const Region in = reachable_input(r, g, t, is);
    if (in.empty()) continue;
    rects.push_back(
        {gout.plane(b, 0), gin.plane(b, 0), in.y0, in.y1, in.x0, in.x1, r.y0, r.y1, r.x0, r.x1});
    if (choose_by == nullptr) count.add(in.y1 - in.y0, in.x1 - in.x0);
  }
  if (choose_by != nullptr)
    for (const Region& r : *choose_by) {
      const Region in = r.empty() ? r : reachable_input(r, g, t, is);
      if (!in.empty()) count.add(in.y1 - in.y0, in.x1 - in.x0);
    }
  // Winograd wherever the model puts it under 3x the direct GEMM's cost (the forward's bar is
  // 0.85x): the model overrates the direct GEMM on the mid-size regions under a unit (VGG16's
  // conv5_3:256 projection took 1.31x the time with the 0.85x bar, bench/ab.py), and this way
  // only tiny regions (a few pixels, where the filter transform dominates) pack the direct path's
  // second copy of the weights. The bar is the same for every call: until this commit it was
  // 0.85x once an earlier call had packed the direct path, so results depended on call history.
  // F(4x4) only where the model puts it under 0.7x F(2x2) (the forward's bar is 0.9x): its
  // flipped filters cost more here than the model's filter term says, and on VGG16's conv4
  // regions under a conv5_3 unit (16-20 pixels square, F(4x4) at 0.68-0.83x by the model) it
  // measured as fast or slower, while the conv1-3 regions (42-194 square, 0.56-0.66x) gained
  // 11-22% (bench/ab.py --project conv5_3:256 --layers). Forcing (set_winograd(2 or 4)) applies.
  const int tile = winograd_tile(is.c, gs.c, count, 3.0, true, 0.7);
  if (tile == 0) return false;
  WinoConv wc;
  wc.k_ch = gs.c, wc.m_ch = is.c, wc.sh = gs.h, wc.sw = gs.w, wc.dh = is.h, wc.dw = is.w;
  wc.pt = t.pt, wc.pl = t.pl, wc.transposed = true, wc.overwrite = overwrite, wc.tile = tile;
  winograd_conv3x3(ctx, wc, forward.groups[0], rects);
  return true;
}

void conv2d_backward(const Ctx& ctx, const Tensor& gout, const Regions& rs, const Tensor& weight,
                     const Window2d& g, int64_t groups, Tensor& gin, const ConvPacked* packed,
                     bool overwrite) {
  if (overwrite && !flipped_backward(g, gin.shape().c / groups))
    fail(ErrorKind::Value, "conv2d_backward: this geometry cannot overwrite its gradient");
  if (ctx.reference) {
    if (overwrite) gin.zero();
    return conv2d_backward_ref(gout, weight, g, groups, gin, 1);
  }
  ConvPacked local;
  if (packed == nullptr) local = conv2d_pack_backward(weight, g, groups), packed = &local;
  if (!packed->depthwise.empty() && depthwise_fits(weight.shape(), g, groups) &&
      depthwise_enabled())
    return depthwise_backward(ctx, gout, rs, packed->depthwise.data(), g, gin);
  if (flipped_backward(g, gin.shape().c / groups))
    return backward_unit_stride(ctx, gout, rs, *packed, g, groups, gin, overwrite);
  backward_col2im(ctx, gout, rs, *packed, g, groups, gin);
}

// conv_transpose2d: the forward is conv2d_backward (the conv of geometry g's data gradient), the
// projection's way down conv_rects (a forward conv with the same filters over the reached
// rectangles).

void conv_transpose2d_forward(const Ctx& ctx, const Tensor& in, const Tensor& weight,
                              const float* bias, const Window2d& g, int64_t groups, Tensor& out,
                              const ConvPacked* packed_back) {
  if (ctx.reference) return conv_transpose2d_forward_ref(in, weight, bias, g, groups, out);
  out.zero();
  const Regions whole(static_cast<size_t>(in.shape().n), Region::full(in.shape()));
  conv2d_backward(ctx, in, whole, weight, g, groups, out, packed_back);
  if (bias == nullptr) return;
  const Shape& os = out.shape();
  const int64_t planes = os.n * os.c, hw = os.plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    float* d = out.data() + p * hw;
    const float b = bias[p % os.c];
    for (int64_t i = 0; i < hw; ++i) d[i] += b;
  }
}

namespace {

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

Region conv_transpose2d_reach(const Region& r, const Window2d& g, const Shape& in) {
  // gout row y takes input rows i with y = i*sh - pt + ki*dh for some tap ki.
  Region o;
  o.y0 = std::max<int64_t>(0, -floor_div(-(r.y0 + g.pt - g.dh * (g.kh - 1)), g.sh));
  o.x0 = std::max<int64_t>(0, -floor_div(-(r.x0 + g.pl - g.dw * (g.kw - 1)), g.sw));
  o.y1 = std::min<int64_t>(in.h, floor_div(r.y1 - 1 + g.pt, g.sh) + 1);
  o.x1 = std::min<int64_t>(in.w, floor_div(r.x1 - 1 + g.pl, g.sw) + 1);
  if (r.empty() || o.empty()) return {};
  return o;
}

void conv_transpose2d_backward(const Ctx& ctx, const Tensor& gout, const Regions& rs,
                               const Tensor& weight, const Window2d& g, int64_t groups, Tensor& gin,
                               const ConvPacked* packed_fwd) {
  if (ctx.reference) return conv_transpose2d_backward_ref(gout, weight, g, groups, gin);
  ConvPacked local;
  if (packed_fwd == nullptr) local = conv2d_pack_forward(weight, groups), packed_fwd = &local;
  Regions reach(rs.size());
  for (size_t b = 0; b < rs.size(); ++b) reach[b] = conv_transpose2d_reach(rs[b], g, gin.shape());
  conv_rects(ctx, gout, rs, reach, *packed_fwd, g, groups, gin, false);
}

}  // namespace pydeconv::kernels
