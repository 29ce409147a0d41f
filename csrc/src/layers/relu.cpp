// relu. The only place the three rules differ:
//   deconvnet gin += relu(g);  guided gin += relu(g) * [x > 0];  backprop gin += g * [x > 0].
#include <algorithm>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Relu : public Layer {
 public:
  using Layer::Layer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({});
    check_params({});
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    const float* x = a.in[0]->data();
    float* y = a.out->data();
    const int64_t n = a.out->numel();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1 && n > 32768)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
  }

  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    const Shape& s = a.gout->shape();
    const int64_t planes = s.n * s.c, hw = s.plane(), per_sample = s.sample();
    const Rule rule = a.rule;
    const uint8_t* mask = a.mask ? a.mask->data() : nullptr;
    const float* x = a.in.empty() || !a.in[0] ? nullptr : a.in[0]->data();
    if (rule != Rule::Deconvnet && !mask && !x)
      fail(ErrorKind::Value, "layer '" + name() + "': the ReLU masks were not kept");
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t b = p / s.c, c = p % s.c;
      const Region& r = a.region[b];
      const int64_t fwd = (b / a.reps) * per_sample + c * hw;  // offset in the forward tensors
      const float* g = a.gout->data() + p * hw;
      float* d = a.gin[0]->data() + p * hw;
      for (int64_t y = r.y0; y < r.y1; ++y)
        for (int64_t xx = r.x0; xx < r.x1; ++xx) {
          const int64_t i = y * s.w + xx;
          const float v = g[i];
          if (rule == Rule::Deconvnet) {
            d[i] += std::max(v, 0.f);
            continue;
          }
          const bool on = mask ? mask[fwd + i] != 0 : x[fwd + i] > 0.f;
          if (on) d[i] += rule == Rule::Guided ? std::max(v, 0.f) : v;
        }
    }
  }

  Needs needs() const override { return {false, false, true, false}; }
};

}  // namespace

std::unique_ptr<Layer> make_relu(const LayerSpec& s) { return std::make_unique<Relu>(s); }

}  // namespace pydeconv
