// Layer norm over channels at each position (ConvNeXt's channels-first LayerNorm) and its
// Jacobian-transpose product. In (N, C, H, W) the channels of one position are a plane apart, so
// the kernels work on a block of consecutive positions for all channels at once: every inner loop
// runs over the block's contiguous positions, with the moments kept in double. Each block belongs
// to one thread: the result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kBlock = 256;             // positions per block (stack buffers)
constexpr int64_t kParallelWork = 1 << 16;  // elements below which one thread does it all

// Mean and 1/sqrt(var + eps) over the c channels (hw apart) of m consecutive positions.
void moments(const float* x, int64_t c, int64_t hw, int64_t m, double eps, double* mean,
             double* rstd) {
  std::fill(mean, mean + m, 0.0);
  std::fill(rstd, rstd + m, 0.0);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float* xc = x + ch * hw;
    for (int64_t i = 0; i < m; ++i) mean[i] += xc[i];
  }
  for (int64_t i = 0; i < m; ++i) mean[i] /= double(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float* xc = x + ch * hw;
    for (int64_t i = 0; i < m; ++i) {
      const double d = xc[i] - mean[i];
      rstd[i] += d * d;
    }
  }
  for (int64_t i = 0; i < m; ++i) rstd[i] = 1.0 / std::sqrt(rstd[i] / double(c) + eps);
}

void forward_block(const float* x, float* y, int64_t c, int64_t hw, int64_t m, const float* scale,
                   const float* bias, double eps) {
  double mean[kBlock], rstd[kBlock];
  moments(x, c, hw, m, eps, mean, rstd);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float* xc = x + ch * hw;
    float* yc = y + ch * hw;
    const double s = scale[ch], b = bias ? bias[ch] : 0.0;
    for (int64_t i = 0; i < m; ++i) yc[i] = static_cast<float>((xc[i] - mean[i]) * rstd[i] * s + b);
  }
}

// gin += J^T g on m consecutive positions: x of the forward sample, g and gin of the gradient's.
void backward_block(const float* x, const float* g, float* gin, int64_t c, int64_t hw, int64_t m,
                    const float* scale, double eps) {
  double mean[kBlock], rstd[kBlock], m1[kBlock], m2[kBlock];
  moments(x, c, hw, m, eps, mean, rstd);
  std::fill(m1, m1 + m, 0.0);
  std::fill(m2, m2 + m, 0.0);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float* xc = x + ch * hw;
    const float* gc = g + ch * hw;
    const double s = scale[ch];
    for (int64_t i = 0; i < m; ++i) {
      const double gs = gc[i] * s;
      m1[i] += gs;
      m2[i] += gs * ((xc[i] - mean[i]) * rstd[i]);
    }
  }
  for (int64_t i = 0; i < m; ++i) {
    m1[i] /= double(c);
    m2[i] /= double(c);
  }
  for (int64_t ch = 0; ch < c; ++ch) {
    const float* xc = x + ch * hw;
    const float* gc = g + ch * hw;
    float* dc = gin + ch * hw;
    const double s = scale[ch];
    for (int64_t i = 0; i < m; ++i) {
      const double xh = (xc[i] - mean[i]) * rstd[i];
      dc[i] += static_cast<float>(rstd[i] * (gc[i] * s - m1[i] - xh * m2[i]));
    }
  }
}

// A run of consecutive positions [p, p + m) of sample b.
struct Run {
  int64_t b, p, m;
};

}  // namespace

void layer_norm_forward(const Ctx& ctx, const Tensor& in, const float* scale, const float* bias,
                        double eps, Tensor& out) {
  if (ctx.reference) return layer_norm_forward_ref(in, scale, bias, eps, out);
  const Shape& s = in.shape();
  const int64_t hw = s.plane(), blocks = (hw + kBlock - 1) / kBlock, tasks = s.n * blocks;
  const bool par = ctx.threads > 1 && in.numel() >= kParallelWork;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t n = t / blocks, p = t % blocks * kBlock, m = std::min(kBlock, hw - p);
    forward_block(in.plane(n, 0) + p, out.plane(n, 0) + p, s.c, hw, m, scale, bias, eps);
  }
}

void layer_norm_backward(const Ctx& ctx, const Tensor& x, const Tensor& gout, const Regions& r,
                         const float* scale, double eps, Tensor& gin, int64_t reps) {
  if (ctx.reference) return layer_norm_backward_ref(x, gout, scale, eps, gin, reps);
  const Shape& s = gout.shape();
  const int64_t hw = s.plane();
  std::vector<Run> runs;
  int64_t work = 0;
  for (int64_t b = 0; b < s.n; ++b) {
    const Region& q = r[static_cast<size_t>(b)];
    if (q.empty()) continue;
    for (int64_t y = q.y0; y < q.y1; ++y)
      for (int64_t x0 = q.x0; x0 < q.x1; x0 += kBlock) {
        runs.push_back({b, y * s.w + x0, std::min(kBlock, q.x1 - x0)});
        work += runs.back().m * s.c;
      }
  }
  const int64_t tasks = static_cast<int64_t>(runs.size());
  const bool par = ctx.threads > 1 && work >= kParallelWork;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
  for (int64_t t = 0; t < tasks; ++t) {
    const Run& u = runs[static_cast<size_t>(t)];
    backward_block(x.plane(u.b / reps, 0) + u.p, gout.plane(u.b, 0) + u.p, gin.plane(u.b, 0) + u.p,
                   s.c, hw, u.m, scale, eps);
  }
}

}  // namespace pydeconv::kernels
