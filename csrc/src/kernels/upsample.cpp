// upsample by integer factors, nearest or bilinear (PyTorch's interpolate with scale_factor), and
// its transpose over each sample's region (YOLO necks, FPNs: on the projection's hot path).
#include <algorithm>
#include <vector>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kParallel = 1 << 16;  // elements below which one thread does it all

// One output index's two input taps along an axis, and their weights.
struct Tap {
  int64_t i0 = 0, i1 = 0;
  float w0 = 1.f, w1 = 0.f;
};

// PyTorch's source coordinate (area_pixel_compute_source_index) as an exact fraction:
// align_corners: o * (in - 1) / (out - 1); otherwise (o + 0.5) / s - 0.5 = (2o + 1 - s) / 2s,
// clamped at 0. Its floor and remainder give the taps with no rounding at whole coordinates.
std::vector<Tap> taps(int64_t in, int64_t out, int64_t s, bool align_corners) {
  std::vector<Tap> t(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    int64_t num = 0, den = 1;
    if (align_corners) {
      if (out > 1) {
        num = o * (in - 1);
        den = out - 1;
      }
    } else {
      num = std::max<int64_t>(0, 2 * o + 1 - s);
      den = 2 * s;
    }
    Tap& k = t[static_cast<size_t>(o)];
    k.i0 = std::min(num / den, in - 1);
    k.i1 = k.i0 < in - 1 ? k.i0 + 1 : k.i0;
    k.w1 = static_cast<float>(num - k.i0 * den) / static_cast<float>(den);
    k.w0 = 1.f - k.w1;
  }
  return t;
}

int64_t region_work(const Regions& rs, int64_t channels) {
  int64_t work = 0;
  for (const Region& r : rs)
    if (!r.empty()) work += (r.y1 - r.y0) * (r.x1 - r.x0) * channels;
  return work;
}

}  // namespace

void upsample_forward(const Ctx& ctx, const Tensor& in, const UpsampleGeom& u, Tensor& out) {
  if (ctx.reference) return upsample_forward_ref(in, u, out);
  const Shape &is = in.shape(), &os = out.shape();
  const int64_t rows = os.n * os.c * os.h;
  const bool par = ctx.threads > 1 && out.numel() > kParallel;
  if (!u.bilinear) {
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
    for (int64_t q = 0; q < rows; ++q) {
      const int64_t p = q / os.h, oy = q % os.h;
      const float* src = in.data() + p * is.plane() + (oy / u.sh) * is.w;
      float* dst = out.data() + q * os.w;
      for (int64_t ix = 0; ix < is.w; ++ix)
        for (int64_t k = 0; k < u.sw; ++k) dst[ix * u.sw + k] = src[ix];
    }
    return;
  }
  const std::vector<Tap> ty = taps(is.h, os.h, u.sh, u.align_corners);
  const std::vector<Tap> tx = taps(is.w, os.w, u.sw, u.align_corners);
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
  for (int64_t q = 0; q < rows; ++q) {
    const int64_t p = q / os.h, oy = q % os.h;
    const Tap& a = ty[static_cast<size_t>(oy)];
    const float* r0 = in.data() + p * is.plane() + a.i0 * is.w;
    const float* r1 = in.data() + p * is.plane() + a.i1 * is.w;
    float* dst = out.data() + q * os.w;
    for (int64_t ox = 0; ox < os.w; ++ox) {
      const Tap& b = tx[static_cast<size_t>(ox)];
      dst[ox] =
          a.w0 * (b.w0 * r0[b.i0] + b.w1 * r0[b.i1]) + a.w1 * (b.w0 * r1[b.i0] + b.w1 * r1[b.i1]);
    }
  }
}

void upsample_backward(const Ctx& ctx, const Tensor& gout, const Regions& rs, const UpsampleGeom& u,
                       Tensor& gin) {
  if (ctx.reference) return upsample_backward_ref(gout, u, gin);
  const Shape &is = gin.shape(), &os = gout.shape();
  const bool par = ctx.threads > 1 && region_work(rs, os.c) > kParallel;
  if (!u.bilinear) {
    // Gather: each input pixel of the region's input rectangle sums the outputs it fed inside
    // the region (fixed order: rows, then columns).
    const int64_t rows = is.n * is.c * is.h;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
    for (int64_t q = 0; q < rows; ++q) {
      const int64_t p = q / is.h, iy = q % is.h;
      const Region& r = rs[static_cast<size_t>(p / is.c)];
      if (r.empty() || iy < r.y0 / u.sh || iy > (r.y1 - 1) / u.sh) continue;
      const int64_t y0 = std::max(iy * u.sh, r.y0), y1 = std::min(iy * u.sh + u.sh, r.y1);
      const float* g = gout.data() + p * os.plane();
      float* d = gin.data() + q * is.w;
      for (int64_t ix = r.x0 / u.sw; ix <= (r.x1 - 1) / u.sw; ++ix) {
        const int64_t x0 = std::max(ix * u.sw, r.x0), x1 = std::min(ix * u.sw + u.sw, r.x1);
        float acc = 0.f;
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t x = x0; x < x1; ++x) acc += g[y * os.w + x];
        d[ix] += acc;
      }
    }
    return;
  }
  // Bilinear: each plane scatters its region's outputs onto their four taps, in order (one
  // thread per plane: the same bits for any thread count).
  const std::vector<Tap> ty = taps(is.h, os.h, u.sh, u.align_corners);
  const std::vector<Tap> tx = taps(is.w, os.w, u.sw, u.align_corners);
  const int64_t planes = os.n * os.c;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
  for (int64_t p = 0; p < planes; ++p) {
    const Region& r = rs[static_cast<size_t>(p / os.c)];
    const float* g = gout.data() + p * os.plane();
    float* d = gin.data() + p * is.plane();
    for (int64_t oy = r.y0; oy < r.y1; ++oy) {
      const Tap& a = ty[static_cast<size_t>(oy)];
      float* d0 = d + a.i0 * is.w;
      float* d1 = d + a.i1 * is.w;
      for (int64_t ox = r.x0; ox < r.x1; ++ox) {
        const Tap& b = tx[static_cast<size_t>(ox)];
        const float v0 = g[oy * os.w + ox] * a.w0, v1 = g[oy * os.w + ox] * a.w1;
        d0[b.i0] += v0 * b.w0;
        d0[b.i1] += v0 * b.w1;
        d1[b.i0] += v1 * b.w0;
        d1[b.i1] += v1 * b.w1;
      }
    }
  }
}

}  // namespace pydeconv::kernels
