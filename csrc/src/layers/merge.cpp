// add (residual) and concat (channels): the DAG joins.
#include <algorithm>

#include "layers.hpp"

namespace pydeconv {
namespace {

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
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1 && n > 32768)
    for (int64_t i = 0; i < n; ++i) {
      float acc = in[0]->data()[i];
      for (size_t k = 1; k < in.size(); ++k) acc += in[k]->data()[i];
      y[i] = acc;
    }
  }

  // All rules: every input receives the whole signal.
  void backward(const Ctx&, BackwardArgs& a) const override {
    const Shape& s = a.gout->shape();
    for (Tensor* gin : a.gin)
      for (int64_t p = 0; p < s.n * s.c; ++p) {
        const Region& r = a.region[p / s.c];
        const float* g = a.gout->data() + p * s.plane();
        float* d = gin->data() + p * s.plane();
        for (int64_t y = r.y0; y < r.y1; ++y)
          for (int64_t x = r.x0; x < r.x1; ++x) d[y * s.w + x] += g[y * s.w + x];
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

  // All rules: each input receives its own slice of channels.
  void backward(const Ctx&, BackwardArgs& a) const override {
    const Shape& gs = a.gout->shape();
    for (int64_t b = 0; b < gs.n; ++b) {
      const float* src = a.gout->sample(b);
      for (Tensor* gin : a.gin) {
        float* d = gin->sample(b);
        const int64_t len = gin->shape().sample();
        for (int64_t i = 0; i < len; ++i) d[i] += src[i];
        src += len;
      }
    }
  }
};

}  // namespace

std::unique_ptr<Layer> make_add(const LayerSpec& s) { return std::make_unique<Add>(s); }
std::unique_ptr<Layer> make_concat(const LayerSpec& s) { return std::make_unique<Concat>(s); }

}  // namespace pydeconv
