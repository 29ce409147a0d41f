// concat over channels, and its backward: each input takes back its own slice of channels.
#include <algorithm>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kParallel = 1 << 16;  // elements below which one thread does it all

}  // namespace

void concat_forward(const Ctx& ctx, const std::vector<const Tensor*>& in, Tensor& out) {
  if (ctx.reference) return concat_forward_ref(in, out);
  const Shape& os = out.shape();
  for (int64_t n = 0; n < os.n; ++n) {
    float* dst = out.sample(n);
    for (const Tensor* t : in) {
      std::copy(t->sample(n), t->sample(n) + t->shape().sample(), dst);
      dst += t->shape().sample();
    }
  }
}

void concat_backward(const Ctx& ctx, const Tensor& gout, const Regions& rs,
                     const std::vector<Tensor*>& gin) {
  if (ctx.reference) return concat_backward_ref(gout, gin);
  const Shape& gs = gout.shape();
  const int64_t hw = gs.plane(), planes = gs.n * gs.c;
  // Where each output channel comes from: input k, channel ch - first[k].
  std::vector<int64_t> first;
  int64_t c0 = 0;
  for (const Tensor* gi : gin) {
    first.push_back(c0);
    c0 += gi->shape().c;
  }
  int64_t work = 0;
  for (const Region& r : rs)
    if (!r.empty()) work += (r.y1 - r.y0) * (r.x1 - r.x0) * gs.c;
  // concat(x, x) hands the same gradient tensor twice: its planes then take two writers.
  bool distinct = true;
  for (size_t i = 0; i < gin.size(); ++i)
    for (size_t j = i + 1; j < gin.size(); ++j) distinct = distinct && gin[i] != gin[j];
  const bool par = ctx.threads > 1 && work > kParallel && distinct;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t b = p / gs.c, ch = p % gs.c;
    size_t k = first.size() - 1;
    while (first[k] > ch) --k;
    Tensor& gi = *gin[k];
    const Region& r = rs[b];
    const float* g = gout.data() + p * hw;
    float* d = gi.plane(b, ch - first[k]);
    for (int64_t y = r.y0; y < r.y1; ++y)
      for (int64_t x = r.x0; x < r.x1; ++x) d[y * gs.w + x] += g[y * gs.w + x];
  }
}

}  // namespace pydeconv::kernels
