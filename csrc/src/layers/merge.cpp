// add (residual) and concat (channels): the DAG joins.
#include <algorithm>
#include <vector>

#include "layers.hpp"

namespace pydeconv {
namespace {

constexpr int64_t kChunk = 4096;         // add: elements per chunk (16 KiB, stays in L1)
constexpr int64_t kParallel = 1 << 16;   // elements below which one thread does it all

class Add : public Layer {
 public:
  using Layer::Layer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 2, 1 << 20);
    check_attrs({});
    check_params({});
    for (auto& s : in)
      if (!s.same_chw(in[0])) bad("inputs differ in shape: " + in[0].str() + " and " + s.str());
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    float* y = a.out->data();
    const int64_t n = a.out->numel();
    const auto& in = a.in;
    // Chunks of the flat tensor, each summed input by input: the inner loops are plain
    // contiguous adds that vectorise, and the chunk stays in cache between inputs.
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1 && n > kParallel)
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

  bool backward_reads_region_only() const override { return true; }

  // All rules: every input receives the whole signal.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    const Shape& s = a.gout->shape();
    const int64_t planes = s.n * s.c;
    int64_t work = 0;
    for (const Region& r : a.region)
      if (!r.empty()) work += (r.y1 - r.y0) * (r.x1 - r.x0) * s.c;
    work *= static_cast<int64_t>(a.gin.size());
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1 && work > kParallel)
    for (int64_t p = 0; p < planes; ++p) {
      const Region& r = a.region[p / s.c];
      for (Tensor* gin : a.gin)
        for (int64_t y = r.y0; y < r.y1; ++y) {
          const int64_t i0 = p * s.plane() + y * s.w + r.x0, m = r.x1 - r.x0;
          const float* g = a.gout->data() + i0;
          float* d = gin->data() + i0;
          for (int64_t i = 0; i < m; ++i) d[i] += g[i];
        }
    }
  }
};

class Concat : public Layer {
 public:
  using Layer::Layer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 2, 1 << 20);
    check_attrs({"axis"});
    check_params({});
    if (int1("axis", 1) != 1) bad("only axis 1 (channels) is supported");
    Shape out = in[0];
    out.c = 0;
    for (auto& s : in) {
      if (s.rank != in[0].rank || s.h != in[0].h || s.w != in[0].w)
        bad("inputs differ in rank or spatial size: " + in[0].str() + " and " + s.str());
      out.c += s.c;
    }
    return out;
  }

  void forward(const Ctx&, ForwardArgs& a) const override {
    const Shape& os = a.out->shape();
    for (int64_t n = 0; n < os.n; ++n) {
      float* dst = a.out->sample(n);
      for (const Tensor* t : a.in) {
        std::copy(t->sample(n), t->sample(n) + t->shape().sample(), dst);
        dst += t->shape().sample();
      }
    }
  }

  bool backward_reads_region_only() const override { return true; }

  // All rules: each input receives its own slice of channels (only the region's rows).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    const Shape& gs = a.gout->shape();
    const int64_t hw = gs.plane(), planes = gs.n * gs.c;
    // Where each output channel comes from: input k, channel ch - first[k].
    std::vector<int64_t> first;
    int64_t c0 = 0;
    for (const Tensor* gin : a.gin) {
      first.push_back(c0);
      c0 += gin->shape().c;
    }
    int64_t work = 0;
    for (const Region& r : a.region)
      if (!r.empty()) work += (r.y1 - r.y0) * (r.x1 - r.x0) * gs.c;
    // concat(x, x) hands the same gradient tensor twice: its planes then take two writers.
    bool distinct = true;
    for (size_t i = 0; i < a.gin.size(); ++i)
      for (size_t j = i + 1; j < a.gin.size(); ++j) distinct = distinct && a.gin[i] != a.gin[j];
    const bool par = ctx.threads > 1 && work > kParallel && distinct;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (par)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t b = p / gs.c, ch = p % gs.c;
      size_t k = first.size() - 1;
      while (first[k] > ch) --k;
      Tensor& gin = *a.gin[k];
      const Region& r = a.region[b];
      const float* g = a.gout->data() + p * hw;
      float* d = gin.plane(b, ch - first[k]);
      for (int64_t y = r.y0; y < r.y1; ++y)
        for (int64_t x = r.x0; x < r.x1; ++x) d[y * gs.w + x] += g[y * gs.w + x];
    }
  }
};

}  // namespace

std::unique_ptr<Layer> make_add(const LayerSpec& s) { return std::make_unique<Add>(s); }
std::unique_ptr<Layer> make_concat(const LayerSpec& s) { return std::make_unique<Concat>(s); }

}  // namespace pydeconv
