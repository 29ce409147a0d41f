// add (residual joins): the element-wise sum of several inputs, and its backward, which hands the
// whole signal to every input.
#include <algorithm>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kChunk = 4096;        // elements per chunk (16 KiB, stays in L1)
constexpr int64_t kParallel = 1 << 16;  // elements below which one thread does it all

}  // namespace

void add_forward(const Ctx& ctx, const std::vector<const Tensor*>& in, Tensor& out) {
  if (ctx.reference) return add_forward_ref(in, out);
  float* y = out.data();
  const int64_t n = out.numel();
  // Chunks of the flat tensor, each summed input by input: the inner loops are plain
  // contiguous adds that vectorise, and the chunk stays in cache between inputs.
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && n > kParallel)
  for (int64_t q = 0; q < chunks; ++q) {
    const int64_t i0 = q * kChunk, m = std::min(kChunk, n - i0);
    const float* x0 = in[0]->data() + i0;
    const float* x1 = in[1]->data() + i0;
    float* d = y + i0;
    for (int64_t i = 0; i < m; ++i) d[i] = x0[i] + x1[i];
    for (size_t k = 2; k < in.size(); ++k) {
      const float* xk = in[k]->data() + i0;
      for (int64_t i = 0; i < m; ++i) d[i] += xk[i];
    }
  }
}

void add_backward(const Ctx& ctx, const Tensor& gout, const Regions& rs,
                  const std::vector<Tensor*>& gin) {
  if (ctx.reference) return add_backward_ref(gout, gin);
  const Shape& s = gout.shape();
  const int64_t planes = s.n * s.c;
  int64_t work = 0;
  for (const Region& r : rs)
    if (!r.empty()) work += (r.y1 - r.y0) * (r.x1 - r.x0) * s.c;
  work *= static_cast<int64_t>(gin.size());
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && work > kParallel)
  for (int64_t p = 0; p < planes; ++p) {
    const Region& r = rs[p / s.c];
    for (Tensor* gi : gin)
      for (int64_t y = r.y0; y < r.y1; ++y) {
        const int64_t i0 = p * s.plane() + y * s.w + r.x0, m = r.x1 - r.x0;
        const float* g = gout.data() + i0;
        float* d = gi->data() + i0;
        for (int64_t i = 0; i < m; ++i) d[i] += g[i];
      }
  }
}

}  // namespace pydeconv::kernels
