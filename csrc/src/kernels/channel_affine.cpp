// Per-channel affine y = x * a[c] + b[c] (inference batch norm), and its backward gin += gout *
// a[c] over each sample's region.
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void channel_affine_forward(const Ctx& ctx, const Tensor& in, const float* a, const float* b,
                            Tensor& out) {
  if (ctx.reference) return channel_affine_forward_ref(in, a, b, out);
  const Shape& s = in.shape();
  const int64_t planes = s.n * s.c, hw = s.plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % s.c;
    const float* x = in.data() + p * hw;
    float* y = out.data() + p * hw;
    for (int64_t i = 0; i < hw; ++i) y[i] = x[i] * a[c] + b[c];
  }
}

void channel_affine_backward(const Ctx& ctx, const Tensor& gout, const Regions& rs, const float* a,
                             Tensor& gin) {
  if (ctx.reference) return channel_affine_backward_ref(gout, a, gin);
  const Shape& s = gout.shape();
  const int64_t planes = s.n * s.c, hw = s.plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % s.c;
    const Region& r = rs[p / s.c];
    const float* g = gout.data() + p * hw;
    float* d = gin.data() + p * hw;
    for (int64_t y = r.y0; y < r.y1; ++y)
      for (int64_t x = r.x0; x < r.x1; ++x) d[y * s.w + x] += g[y * s.w + x] * a[c];
  }
}

}  // namespace pydeconv::kernels
