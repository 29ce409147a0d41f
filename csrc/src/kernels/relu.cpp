// ReLU forward (and its mask) and the ReLU's backward under the three projection rules, the only
// place they differ: deconvnet relu(g); guided relu(g) * [x > 0]; backprop g * [x > 0].
#include <algorithm>
#include <type_traits>

#include "kernels/kernels.hpp"
#include "relu_run.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kParallel = 1 << 16;  // elements below which one thread does it all

// One pass over the regions' rows. Accumulate false: in place (gin is gout's own buffer), the
// result replaces the signal; true: it is added to what other consumers already sent down.
template <typename Accumulate>
void relu_rows(const Ctx& ctx, const Tensor& gout, const Regions& region, const float* x,
               const uint8_t* mask, bool rectify, bool gate, Tensor& gin, int64_t reps,
               int64_t work, Accumulate) {
  constexpr bool acc = Accumulate::value;
  const Shape& s = gout.shape();
  const int64_t planes = s.n * s.c, hw = s.plane(), per_sample = s.sample();
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && work > kParallel)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t b = p / s.c, c = p % s.c;
    const Region& r = region[b];
    const int64_t fwd = (b / reps) * per_sample + c * hw;  // offset in the forward tensors
    for (int64_t y = r.y0; y < r.y1; ++y) {
      // One row of the region; the rule is chosen outside the loops.
      const int64_t i0 = y * s.w + r.x0, m = r.x1 - r.x0;
      const float* g = gout.data() + p * hw + i0;
      float* d = gin.data() + p * hw + i0;
      // Every load is unconditional (only the select depends on the mask), so the compiler
      // if-converts and vectorises each loop. In place (acc false) d is g itself: the loops
      // then use d alone, or the vectoriser's overlap check sends them down its scalar path.
      if (!acc) {
        if (!gate) {
          for (int64_t i = 0; i < m; ++i) d[i] = d[i] > 0.f ? d[i] : 0.f;
        } else {
          if (mask) {
            const uint8_t* on = mask + fwd + i0;
            if (rectify)
              for (int64_t i = 0; i < m; ++i) d[i] = on[i] && d[i] > 0.f ? d[i] : 0.f;
            else
              for (int64_t i = 0; i < m; ++i) d[i] = on[i] ? d[i] : 0.f;
          } else {
            const float* xx = x + fwd + i0;
            if (rectify)
              for (int64_t i = 0; i < m; ++i) d[i] = xx[i] > 0.f && d[i] > 0.f ? d[i] : 0.f;
            else
              for (int64_t i = 0; i < m; ++i) d[i] = xx[i] > 0.f ? d[i] : 0.f;
          }
        }
        continue;
      }
      if (!gate) {
        for (int64_t i = 0; i < m; ++i) d[i] += std::max(g[i], 0.f);
      } else if (mask) {
        const uint8_t* on = mask + fwd + i0;
        if (rectify)
          for (int64_t i = 0; i < m; ++i) d[i] += on[i] ? std::max(g[i], 0.f) : 0.f;
        else
          for (int64_t i = 0; i < m; ++i) d[i] += on[i] ? g[i] : 0.f;
      } else {
        const float* xx = x + fwd + i0;
        if (rectify)
          for (int64_t i = 0; i < m; ++i) d[i] += xx[i] > 0.f ? std::max(g[i], 0.f) : 0.f;
        else
          for (int64_t i = 0; i < m; ++i) d[i] += xx[i] > 0.f ? g[i] : 0.f;
      }
    }
  }
}

}  // namespace

void relu_forward(const Ctx& ctx, const float* x, float* y, uint8_t* mask, int64_t n) {
  if (ctx.reference) return relu_forward_ref(x, y, mask, n);
  // Plain selects the compiler turns into packed compares (relu_run); a second thread only pays
  // once the tensor is well past the cache (memory bound either way).
  constexpr int64_t kChunk = 4096;
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && n > kParallel)
  for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c) {
    const int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
    relu_run(x + i0, y + i0, mask != nullptr ? mask + i0 : nullptr, i1 - i0);
  }
}

void relu_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const float* x,
                   const uint8_t* mask, bool rectify, bool gate, Tensor& gin, int64_t reps) {
  if (ctx.reference) return relu_backward_ref(gout, x, mask, rectify, gate, gin, reps);
  const Shape& s = gout.shape();
  int64_t work = 0;
  for (int64_t b = 0; b < s.n; ++b) {
    const Region& rb = r[b];
    if (!rb.empty()) work += (rb.y1 - rb.y0) * (rb.x1 - rb.x0) * s.c;
  }
  if (gin.data() == gout.data())
    relu_rows(ctx, gout, r, x, mask, rectify, gate, gin, reps, work, std::false_type{});
  else
    relu_rows(ctx, gout, r, x, mask, rectify, gate, gin, reps, work, std::true_type{});
}

}  // namespace pydeconv::kernels
