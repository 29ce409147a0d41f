// Implicit im2col panels (see im2col_panels.hpp). pack() runs for every KC x NR panel of every
// conv GEMM, so it is written for the common case: a panel's 16 columns lie in one or two output
// rows, and with stride 1 each of those runs is a plain copy of consecutive input values.
#include "im2col_panels.hpp"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace pydeconv::kernels {
namespace {

constexpr int64_t NR = kSgemmNR;

// ceil(a / b) for b > 0 and any sign of a.
int64_t ceil_div_signed(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// d[q] = src[2q] for the 16 columns of a panel row (stride-2 convs: 7x7/2 and 5x5/2 first
// layers). Reads src[0..30] only: the last load starts at 27 so it ends on the last column used.
void copy_stride2(const float* src, float* d) {
#if defined(__SSE2__)
  for (int q = 0; q < 12; q += 4) {  // outputs q..q+3 from inputs 2q..2q+7
    const __m128 a = _mm_loadu_ps(src + 2 * q), b = _mm_loadu_ps(src + 2 * q + 4);
    _mm_storeu_ps(d + q, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
  }
  const __m128 a = _mm_loadu_ps(src + 24), b = _mm_loadu_ps(src + 27);  // 24..27, 27..30
  _mm_storeu_ps(d + 12, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 2, 0)));
#else
  for (int q = 0; q < NR; ++q) d[q] = src[2 * q];
#endif
}

}  // namespace

Im2colPanels::Im2colPanels(const Window2d& g, int64_t channels, int64_t h, int64_t w,
                           std::vector<ColRect> rects)
    : g_(g), channels_(channels), h_(h), w_(w), rects_(std::move(rects)) {
  if (rects_.size() == 1) {
    const ColRect& r = rects_[0];
    contiguous_ = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 &&
                  r.oy0 == 0 && r.ox0 == 0 && r.cols == w && r.rows <= h && r.ylo <= 0 &&
                  r.yhi >= h && r.xlo <= 0 && r.xhi >= w;
  }
}

int64_t Im2colPanels::n() const {
  return rects_.empty() ? 0 : rects_.back().col0 + rects_.back().rows * rects_.back().cols;
}

void Im2colPanels::pack(int64_t j0, int64_t nr, int64_t p0, int64_t kcb, float* dst) const {
  const int64_t plane = h_ * w_;
  if (contiguous_) {  // B is the input itself: row p is channel p's plane
    const float* base = rects_[0].src + j0;
    for (int64_t p = 0; p < kcb; ++p) {
      float* d = dst + p * NR;
      std::memcpy(d, base + (p0 + p) * plane, static_cast<size_t>(nr) * sizeof(float));
      std::fill(d + nr, d + NR, 0.0f);
    }
    return;
  }

  // Split the panel's columns into runs, one per output row touched.
  Run runs[NR]{};  // (initialised: GCC cannot see that nr >= 1 fills runs[0])
  int nruns = 0;
  auto it = std::upper_bound(rects_.begin(), rects_.end(), j0,
                             [](int64_t j, const ColRect& r) { return j < r.col0; });
  size_t ri = static_cast<size_t>(it - rects_.begin()) - 1;
  for (int64_t j = j0; j < j0 + nr;) {
    const ColRect* r = &rects_[ri];
    while (j >= r->col0 + r->rows * r->cols) r = &rects_[++ri];
    const int64_t local = j - r->col0, oy = r->oy0 + local / r->cols, cx = local % r->cols;
    const int64_t len = std::min(r->cols - cx, j0 + nr - j);
    runs[nruns++] = {r->src,
                     oy * g_.sh - g_.pt,
                     (r->ox0 + cx) * g_.sw - g_.pl,
                     len,
                     j - j0,
                     r->ylo,
                     r->yhi,
                     r->xlo,
                     r->xhi};
    j += len;
  }

  const int64_t taps = g_.kh * g_.kw;
  int64_t c = p0 / taps, ki = p0 % taps / g_.kw, kj = p0 % g_.kw;
  auto next_tap = [&] {  // GEMM row p + 1: the next kernel column, row, then channel
    if (++kj == g_.kw) {
      kj = 0;
      if (++ki == g_.kh) ki = 0, ++c;
    }
  };
  const bool one_run = nruns == 1 && runs[0].len == NR;
  if (!one_run && interior(runs, nruns)) {
    // Every tap of every column reads inside its rectangle (no padding reached): each panel row
    // is a gather of nr values at fixed offsets from the tap's position. Panels that straddle
    // output rows (a 26-wide map in 16-column panels) take this path instead of per-run loops.
    const float* col[NR];
    for (int i = 0; i < nruns; ++i) {
      const Run& u = runs[i];
      for (int64_t q = 0; q < u.len; ++q) col[u.at + q] = u.src + u.iy0 * w_ + u.ix0 + q * g_.sw;
    }
    for (int64_t p = 0; p < kcb; ++p) {
      float* d = dst + p * NR;
      const int64_t at = c * plane + ki * g_.dh * w_ + kj * g_.dw;
      for (int64_t q = 0; q < nr; ++q) d[q] = col[q][at];
      for (int64_t q = nr; q < NR; ++q) d[q] = 0.0f;
      next_tap();
    }
    return;
  }
  const int64_t span = (NR - 1) * g_.sw + 1;  // input columns 16 outputs of one row read
  // Each run's readable columns [lo, hi) per kernel column kj, worked out once per panel (at its
  // first row off the fast path) rather than per row: two divisions per run and row otherwise.
  constexpr int64_t kMaxKw = 16;
  int64_t lo[NR][kMaxKw], hi[NR][kMaxKw];
  bool cols_known = false;
  auto known_cols = [&] {
    if (g_.kw > kMaxKw) return false;
    for (int i = 0; i < nruns; ++i)
      for (int64_t j = 0; j < g_.kw; ++j) {
        const Run& u = runs[i];
        const int64_t ix = u.ix0 + j * g_.dw;
        lo[i][j] = std::clamp<int64_t>(ceil_div_signed(u.xlo - ix, g_.sw), 0, u.len);
        hi[i][j] = std::clamp<int64_t>(ceil_div_signed(u.xhi - ix, g_.sw), lo[i][j], u.len);
      }
    return cols_known = true;
  };
  for (int64_t p = 0; p < kcb; ++p) {
    float* d = dst + p * NR;
    const Run& u0 = runs[0];
    const int64_t iy0 = u0.iy0 + ki * g_.dh, ix0 = u0.ix0 + kj * g_.dw;
    if (one_run && iy0 >= u0.ylo && iy0 < u0.yhi && ix0 >= u0.xlo && ix0 + span <= u0.xhi) {
      // The common case, kept branch-light: 16 in-bounds columns of one input row.
      const float* src = u0.src + c * plane + iy0 * w_ + ix0;
      if (g_.sw == 1) {
        // memcpy of a constant size: vector moves (a plain loop stays scalar, as the compiler
        // cannot rule out overlap).
        std::memcpy(d, src, NR * sizeof(float));
      } else if (g_.sw == 2) {
        copy_stride2(src, d);
      } else {
        for (int64_t q = 0; q < NR; ++q) d[q] = src[q * g_.sw];
      }
    } else if (cols_known || known_cols()) {
      for (int i = 0; i < nruns; ++i)
        copy_run(runs[i], c * plane, ki, kj, lo[i][kj], hi[i][kj], d + runs[i].at);
      std::fill(d + nr, d + NR, 0.0f);
    } else {
      for (int i = 0; i < nruns; ++i) pack_run(runs[i], c * plane, ki, kj, d + runs[i].at);
      std::fill(d + nr, d + NR, 0.0f);
    }
    next_tap();
  }
}

bool Im2colPanels::interior(const Run* runs, int n) const {
  for (int i = 0; i < n; ++i) {
    const Run& u = runs[i];
    if (u.iy0 < u.ylo || u.iy0 + (g_.kh - 1) * g_.dh >= u.yhi || u.ix0 < u.xlo ||
        u.ix0 + (u.len - 1) * g_.sw + (g_.kw - 1) * g_.dw >= u.xhi)
      return false;
  }
  return true;
}

// One run of one panel row (kernel tap ki, kj of the channel at `offset`), zero where the tap
// falls outside the readable rectangle.
void Im2colPanels::pack_run(const Run& u, int64_t offset, int64_t ki, int64_t kj, float* o) const {
  const int64_t ix = u.ix0 + kj * g_.dw;
  // Columns q in [lo, hi) read inside [xlo, xhi): ix + q * sw >= xlo and < xhi.
  const int64_t lo = std::clamp<int64_t>(ceil_div_signed(u.xlo - ix, g_.sw), 0, u.len);
  const int64_t hi = std::clamp<int64_t>(ceil_div_signed(u.xhi - ix, g_.sw), lo, u.len);
  copy_run(u, offset, ki, kj, lo, hi, o);
}

// pack_run with the readable columns [lo, hi) of the run for this kj already known.
void Im2colPanels::copy_run(const Run& u, int64_t offset, int64_t ki, int64_t kj, int64_t lo,
                            int64_t hi, float* o) const {
  const int64_t iy = u.iy0 + ki * g_.dh;
  if (iy < u.ylo || iy >= u.yhi) {
    std::fill(o, o + u.len, 0.0f);
    return;
  }
  // Runs are short (<= 16): plain loops, not library calls; the source never overlaps o.
  const int64_t sw = g_.sw;
  float* __restrict dst = o;
  const float* __restrict src = u.src + offset + iy * w_ + u.ix0 + kj * g_.dw;
  for (int64_t q = 0; q < lo; ++q) dst[q] = 0.0f;
  if (sw == 1) {
    for (int64_t q = lo; q < hi; ++q) dst[q] = src[q];
  } else {
    for (int64_t q = lo; q < hi; ++q) dst[q] = src[q * sw];
  }
  for (int64_t q = hi; q < u.len; ++q) dst[q] = 0.0f;
}

}  // namespace pydeconv::kernels
