// mul: the element-wise product of two inputs with broadcasting (SE gates (C, 1, 1), spatial
// attention (1, H, W), scalars), and its product-rule backward over each sample's region
// (EfficientNet, YOLO attention blocks: on the projection's hot path).
#include <algorithm>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kParallel = 1 << 16;  // elements below which one thread does it all
constexpr int64_t kChunk = 64;          // columns summed at once in double (a stack array)

// Plane (n, c) of t, broadcast along a single channel.
const float* bplane(const Tensor& t, int64_t n, int64_t c) {
  const Shape& s = t.shape();
  return t.data() + (n * s.c + (s.c == 1 ? 0 : c)) * s.plane();
}

// gin += gout * other over each sample's region, summed over gin's broadcast dims. Each element of
// gin is summed by one thread in a fixed order: the same bits for any thread count.
void mul_backward_one(const Ctx& ctx, const Tensor& gout, const Regions& rs, const Tensor& other,
                      Tensor& gin, int64_t reps) {
  const Shape &gs = gout.shape(), &ks = gin.shape(), &os = other.shape();
  const int64_t oy = os.h == 1 ? 0 : os.w, ox = os.w == 1 ? 0 : 1;  // other's row/col steps
  const bool full = ks.c == gs.c && ks.h == gs.h && ks.w == gs.w;
  int64_t work = 0;
  for (const Region& r : rs)
    if (!r.empty()) work += (r.y1 - r.y0) * (r.x1 - r.x0) * gs.c;
  const int64_t planes = ks.n * ks.c;
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && work > kParallel)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t b = p / ks.c, ck = p % ks.c;
    const Region& r = rs[static_cast<size_t>(b)];
    if (r.empty()) continue;
    float* d = gin.data() + p * ks.plane();
    if (full) {  // no sum: one product per element
      const float* g = gout.data() + p * gs.plane();
      const float* o = bplane(other, b / reps, ck);
      for (int64_t y = r.y0; y < r.y1; ++y) {
        const float* grow = g + y * gs.w;
        const float* orow = o + y * oy;
        float* drow = d + y * ks.w;
        if (ox == 1)
          for (int64_t x = r.x0; x < r.x1; ++x) drow[x] += grow[x] * orow[x];
        else
          for (int64_t x = r.x0; x < r.x1; ++x) drow[x] += grow[x] * orow[0];
      }
      continue;
    }
    const int64_t c0 = ks.c == 1 ? 0 : ck, c1 = ks.c == 1 ? gs.c : ck + 1;
    const int64_t ky0 = ks.h == 1 ? 0 : r.y0, ky1 = ks.h == 1 ? 1 : r.y1;
    const int64_t kx0 = ks.w == 1 ? 0 : r.x0, kx1 = ks.w == 1 ? 1 : r.x1;
    for (int64_t ky = ky0; ky < ky1; ++ky) {
      const int64_t y0 = ks.h == 1 ? r.y0 : ky, y1 = ks.h == 1 ? r.y1 : ky + 1;
      for (int64_t x0 = kx0; x0 < kx1; x0 += kChunk) {
        const int64_t x1 = std::min(kx1, x0 + kChunk);
        double acc[kChunk] = {};
        for (int64_t c = c0; c < c1; ++c) {
          const float* g = gout.data() + (b * gs.c + c) * gs.plane();
          const float* o = bplane(other, b / reps, c);
          for (int64_t y = y0; y < y1; ++y) {
            const float* grow = g + y * gs.w;
            const float* orow = o + y * oy;
            if (ks.w == 1) {
              double s = 0.0;
              for (int64_t x = r.x0; x < r.x1; ++x) s += double(grow[x]) * orow[x * ox];
              acc[0] += s;
            } else {
              for (int64_t x = x0; x < x1; ++x) acc[x - x0] += double(grow[x]) * orow[x * ox];
            }
          }
        }
        float* drow = d + ky * ks.w;
        for (int64_t x = x0; x < x1; ++x)
          drow[x] = static_cast<float>(double(drow[x]) + acc[x - x0]);
      }
    }
  }
}

}  // namespace

void mul_forward(const Ctx& ctx, const Tensor& a, const Tensor& b, Tensor& out) {
  if (ctx.reference) return mul_forward_ref(a, b, out);
  const Shape &as = a.shape(), &bs = b.shape(), &s = out.shape();
  const int64_t ay = as.h == 1 ? 0 : as.w, ax = as.w == 1 ? 0 : 1;
  const int64_t by = bs.h == 1 ? 0 : bs.w, bx = bs.w == 1 ? 0 : 1;
  const int64_t planes = s.n * s.c;
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && out.numel() > kParallel)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t n = p / s.c, c = p % s.c;
    const float* pa = bplane(a, n, c);
    const float* pb = bplane(b, n, c);
    float* d = out.data() + p * s.plane();
    for (int64_t y = 0; y < s.h; ++y) {
      const float* ra = pa + y * ay;
      const float* rb = pb + y * by;
      float* rd = d + y * s.w;
      if (ax == 1 && bx == 1)
        for (int64_t x = 0; x < s.w; ++x) rd[x] = ra[x] * rb[x];
      else if (ax == 1)
        for (int64_t x = 0; x < s.w; ++x) rd[x] = ra[x] * rb[0];
      else if (bx == 1)
        for (int64_t x = 0; x < s.w; ++x) rd[x] = ra[0] * rb[x];
      else
        for (int64_t x = 0; x < s.w; ++x) rd[x] = ra[0] * rb[0];
    }
  }
}

void mul_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const Tensor& a,
                  const Tensor& b, Tensor* ga, Tensor* gb, int64_t reps) {
  if (ctx.reference) return mul_backward_ref(gout, a, b, ga, gb, reps);
  if (ga) mul_backward_one(ctx, gout, r, b, *ga, reps);
  if (gb) mul_backward_one(ctx, gout, r, a, *gb, reps);
}

}  // namespace pydeconv::kernels
