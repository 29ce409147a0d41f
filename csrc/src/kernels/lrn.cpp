// Cross-channel local response normalisation and its Jacobian-transpose product.
//   y_c = x_c * d_c^-beta,  d_c = bias + alpha/size * sum_{j in win(c)} x_j^2
//   dL/dx_j = g_j d_j^-beta - 2 beta alpha/size x_j sum_{c: j in win(c)} g_c x_c d_c^(-beta-1)
// win(c) = [c - lo, c + hi], lo = floor((size-1)/2), hi = ceil((size-1)/2), clipped (ONNX).
//
// In (N, C, H, W) a channel window is strided by a whole plane, so the kernels work on a block of
// consecutive positions for all channels at once: every inner loop runs over the block's
// contiguous positions (vectorised), and the window sums slide down the channels (add the channel
// entering, subtract the one leaving) instead of being recomputed per channel. Sums are kept in
// double so sliding does not drift. Each block is owned by one thread: no reductions, the result
// does not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "dispatch.hpp"
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

// The portable table's d^-0.75 (dispatch.hpp). beta = 0.75 (AlexNet, ZFNet, GoogLeNet) is
// 1/sqrt(d sqrt(d)): correctly rounded float sqrt and division keep it within a few float ulps
// (x86/lrn_avx2.cpp does the same operations eight at a time, bit for bit).
void lrn_inv_pow075_portable(const double* d, int64_t m, float* r) {
  for (int64_t i = 0; i < m; ++i) {
    const float v = static_cast<float>(d[i]);
    r[i] = 1.0f / std::sqrt(v * std::sqrt(v));
  }
}

void lrn_inv_pow075_portable(const double* d, int64_t m, double* r) {
  for (int64_t i = 0; i < m; ++i) r[i] = 1.0 / std::sqrt(d[i] * std::sqrt(d[i]));
}

namespace {

constexpr int64_t kBlock = 256;             // forward: positions per block (stack buffers)
constexpr int64_t kBackwardFloats = 8192;   // backward: channels x positions per block buffer
constexpr int64_t kParallelWork = 1 << 15;  // elements below which one thread does it all

struct Window {
  int64_t lo, hi;
  explicit Window(const LrnParams& p) : lo((p.size - 1) / 2), hi(p.size - 1 - (p.size - 1) / 2) {}
};

// r[i] = d[i]^-beta: the kernel table's power for beta = 0.75 (the table `kt` is fetched once per
// call, outside the parallel loops), other betas exp(-beta log d) in double (half pow's cost).
void inv_pow(const KernelTable& kt, const double* d, int64_t m, double beta, float* r) {
  if (beta == 0.75) return kt.lrn_pow075_float(d, m, r);
  for (int64_t i = 0; i < m; ++i) r[i] = static_cast<float>(std::exp(-beta * std::log(d[i])));
}

// The backward pass keeps d^-beta in double: it feeds a difference of two terms.
void inv_pow(const KernelTable& kt, const double* d, int64_t m, double beta, double* r) {
  if (beta == 0.75) return kt.lrn_pow075_double(d, m, r);
  for (int64_t i = 0; i < m; ++i) r[i] = std::exp(-beta * std::log(d[i]));
}

// s += sign * x^2 over a block.
void add_squares(const float* x, int64_t m, double sign, double* s) {
  for (int64_t i = 0; i < m; ++i) s[i] += sign * (double(x[i]) * x[i]);
}

// Forward on positions [0, m) of one sample; x, y point at channel 0 of the block.
void forward_block(const float* x, float* y, int64_t c, int64_t hw, int64_t m, const LrnParams& p,
                   const KernelTable& kt) {
  const Window win(p);
  const double k = p.alpha / double(p.size);
  double s[kBlock], d[kBlock];
  float r[kBlock];
  std::fill(s, s + m, 0.0);
  for (int64_t j = 0; j <= std::min(win.hi, c - 1); ++j) add_squares(x + j * hw, m, 1.0, s);
  for (int64_t ch = 0; ch < c; ++ch) {
    if (ch > 0) {  // slide the window down one channel
      if (ch + win.hi < c) add_squares(x + (ch + win.hi) * hw, m, 1.0, s);
      if (ch - win.lo - 1 >= 0) add_squares(x + (ch - win.lo - 1) * hw, m, -1.0, s);
    }
    for (int64_t i = 0; i < m; ++i) d[i] = p.bias + k * s[i];
    inv_pow(kt, d, m, p.beta, r);
    const float* xc = x + ch * hw;
    float* yc = y + ch * hw;
    for (int64_t i = 0; i < m; ++i) yc[i] = xc[i] * r[i];
  }
}

// Backward on positions [0, m) of one sample. Scratch: r and t hold c * m doubles each, s and a m.
void backward_block(const float* x, const float* g, float* out, int64_t c, int64_t hw, int64_t m,
                    const LrnParams& p, const KernelTable& kt, double* r, double* t, double* s) {
  const Window win(p);
  const double k = p.alpha / double(p.size), k2b = 2.0 * p.beta * k;
  // Pass 1: r_c = d_c^-beta and t_c = g_c x_c d_c^(-beta-1) for every channel.
  std::fill(s, s + m, 0.0);
  for (int64_t j = 0; j <= std::min(win.hi, c - 1); ++j) add_squares(x + j * hw, m, 1.0, s);
  for (int64_t ch = 0; ch < c; ++ch) {
    if (ch > 0) {
      if (ch + win.hi < c) add_squares(x + (ch + win.hi) * hw, m, 1.0, s);
      if (ch - win.lo - 1 >= 0) add_squares(x + (ch - win.lo - 1) * hw, m, -1.0, s);
    }
    double* rc = r + ch * m;
    double* tc = t + ch * m;
    for (int64_t i = 0; i < m; ++i) tc[i] = p.bias + k * s[i];  // d_c, for now
    inv_pow(kt, tc, m, p.beta, rc);
    const float* xc = x + ch * hw;
    const float* gc = g + ch * hw;
    for (int64_t i = 0; i < m; ++i) tc[i] = double(gc[i]) * xc[i] * rc[i] / tc[i];
  }
  // Pass 2: a_j = sum of t_c over the channels whose window holds j, c in [j - hi, j + lo],
  // sliding the same way; then gin_j += g_j r_j - 2 beta alpha/size x_j a_j.
  double* a = s;
  std::fill(a, a + m, 0.0);
  for (int64_t ch = 0; ch <= std::min(win.lo, c - 1); ++ch)
    for (int64_t i = 0; i < m; ++i) a[i] += t[ch * m + i];
  for (int64_t j = 0; j < c; ++j) {
    if (j > 0) {
      if (j + win.lo < c)
        for (int64_t i = 0; i < m; ++i) a[i] += t[(j + win.lo) * m + i];
      if (j - win.hi - 1 >= 0)
        for (int64_t i = 0; i < m; ++i) a[i] -= t[(j - win.hi - 1) * m + i];
    }
    const float* xj = x + j * hw;
    const float* gj = g + j * hw;
    const double* rj = r + j * m;
    float* oj = out + j * hw;
    for (int64_t i = 0; i < m; ++i) oj[i] += static_cast<float>(gj[i] * rj[i] - k2b * xj[i] * a[i]);
  }
}

// A run of positions of one sample: [pos, pos + m).
struct Span {
  int64_t b, pos, m;
};

}  // namespace

void lrn_forward(const Ctx& ctx, const Tensor& in, const LrnParams& p, Tensor& out) {
  if (ctx.reference) return lrn_forward_ref(in, p, out);
  const Shape& s = in.shape();
  const int64_t hw = s.plane(), per = (hw + kBlock - 1) / kBlock, items = s.n * per;
  const bool par = ctx.threads > 1 && items > 1 && in.numel() > kParallelWork;
  const KernelTable& kt = kernel_table();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
  for (int64_t q = 0; q < items; ++q) {
    const int64_t n = q / per, p0 = q % per * kBlock;
    forward_block(in.sample(n) + p0, out.sample(n) + p0, s.c, hw, std::min(kBlock, hw - p0), p, kt);
  }
}

void lrn_backward(const Ctx& ctx, const Tensor& x, const Tensor& gout, const Regions& rs,
                  const LrnParams& p, Tensor& gin, int64_t reps) {
  if (ctx.reference) return lrn_backward_ref(x, gout, p, gin, reps);
  const Shape& s = gout.shape();
  const int64_t hw = s.plane();
  // Spans: runs of a region's positions, short enough that r and t stay cache-sized.
  const int64_t block = std::max<int64_t>(8, std::min<int64_t>(kBlock, kBackwardFloats / s.c));
  std::vector<Span> spans;
  int64_t work = 0;
  for (int64_t b = 0; b < s.n; ++b) {
    const Region& r = rs[b];
    if (r.empty()) continue;
    if (r.x0 == 0 && r.x1 == s.w) {  // whole rows are one contiguous run of positions
      for (int64_t q = r.y0 * s.w; q < r.y1 * s.w; q += block)
        spans.push_back({b, q, std::min(block, r.y1 * s.w - q)});
    } else {
      for (int64_t y = r.y0; y < r.y1; ++y)
        for (int64_t x0 = r.x0; x0 < r.x1; x0 += block)
          spans.push_back({b, y * s.w + x0, std::min(block, r.x1 - x0)});
    }
    work += (r.y1 - r.y0) * (r.x1 - r.x0) * s.c;
  }
  const int threads = ctx.threads > 1 && spans.size() > 1 && work > kParallelWork ? ctx.threads : 1;
  // Scratch per thread, allocated here so nothing inside the parallel region can throw.
  const int64_t per_thread = 2 * s.c * block + block;
  std::vector<double> scratch(static_cast<size_t>(threads * per_thread));
  const KernelTable& kt = kernel_table();
  const int64_t count = static_cast<int64_t>(spans.size());
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t q = 0; q < count; ++q) {
    const Span& sp = spans[q];
    double* buf = scratch.data() + omp_get_thread_num() * per_thread;
    backward_block(x.sample(sp.b / reps) + sp.pos, gout.sample(sp.b) + sp.pos,
                   gin.sample(sp.b) + sp.pos, s.c, hw, sp.m, p, kt, buf, buf + s.c * block,
                   buf + 2 * s.c * block);
  }
}

}  // namespace pydeconv::kernels
