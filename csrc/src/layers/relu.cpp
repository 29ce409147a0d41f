// relu. The only place the three rules differ:
//   deconvnet gin += relu(g);  guided gin += relu(g) * [x > 0];  backprop gin += g * [x > 0].
#include <algorithm>
#include <type_traits>

#include "layers.hpp"

namespace pydeconv {
namespace {

// Elements below which one thread does the whole loop (a fork costs about 10 us).
constexpr int64_t kParallel = 1 << 16;

class Relu : public Layer {
 public:
  using Layer::Layer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({});
    check_params({});
    return in[0];
  }

  // y = relu(x), [x > 0] into the mask under keep='minimal'; y may be x itself (in place).
  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::relu_forward(ctx, a.in[0]->data(), a.out->data(),
                          a.mask != nullptr ? a.mask->data() : nullptr, a.out->numel());
  }

  bool forward_in_place() const override { return true; }

  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    const Shape& s = a.gout->shape();
    const Rule rule = a.rule;
    const uint8_t* mask = a.mask ? a.mask->data() : nullptr;
    const float* x = a.in.empty() || !a.in[0] ? nullptr : a.in[0]->data();
    if (rule != Rule::Deconvnet && !mask && !x)
      fail(ErrorKind::Value, "layer '" + name() + "': the ReLU masks were not kept");
    int64_t work = 0;
    for (int64_t b = 0; b < s.n; ++b) {
      const Region& r = a.region[b];
      if (!r.empty()) work += (r.y1 - r.y0) * (r.x1 - r.x0) * s.c;
    }
    // In place (gin is gout's own buffer, see BackwardArgs) the result replaces the signal;
    // otherwise it is added to what other consumers already sent down.
    if (a.gin[0]->data() == a.gout->data())
      rows(ctx, a, x, mask, work, std::false_type{});
    else
      rows(ctx, a, x, mask, work, std::true_type{});
  }

  bool backward_reads_region_only() const override { return true; }

  bool backward_in_place() const override { return true; }

 private:
  template <typename Accumulate>
  static void rows(const Ctx& ctx, BackwardArgs& a, const float* x, const uint8_t* mask,
                   int64_t work, Accumulate) {
    constexpr bool acc = Accumulate::value;
    const Shape& s = a.gout->shape();
    const int64_t planes = s.n * s.c, hw = s.plane(), per_sample = s.sample();
    const Rule rule = a.rule;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1 && work > kParallel)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t b = p / s.c, c = p % s.c;
      const Region& r = a.region[b];
      const int64_t fwd = (b / a.reps) * per_sample + c * hw;  // offset in the forward tensors
      for (int64_t y = r.y0; y < r.y1; ++y) {
        // One row of the region; the rule is chosen outside the loops.
        const int64_t i0 = y * s.w + r.x0, m = r.x1 - r.x0;
        const float* g = a.gout->data() + p * hw + i0;
        float* d = a.gin[0]->data() + p * hw + i0;
        // Every load is unconditional (only the select depends on the mask), so the compiler
        // if-converts and vectorises each loop. In place (acc false) d is g itself: the loops
        // then use d alone, or the vectoriser's overlap check sends them down its scalar path.
        if (!acc) {
          if (rule == Rule::Deconvnet) {
            for (int64_t i = 0; i < m; ++i) d[i] = d[i] > 0.f ? d[i] : 0.f;
          } else {
            const bool guided = rule == Rule::Guided;
            if (mask) {
              const uint8_t* on = mask + fwd + i0;
              if (guided)
                for (int64_t i = 0; i < m; ++i) d[i] = on[i] && d[i] > 0.f ? d[i] : 0.f;
              else
                for (int64_t i = 0; i < m; ++i) d[i] = on[i] ? d[i] : 0.f;
            } else {
              const float* xx = x + fwd + i0;
              if (guided)
                for (int64_t i = 0; i < m; ++i) d[i] = xx[i] > 0.f && d[i] > 0.f ? d[i] : 0.f;
              else
                for (int64_t i = 0; i < m; ++i) d[i] = xx[i] > 0.f ? d[i] : 0.f;
            }
          }
          continue;
        }
        if (rule == Rule::Deconvnet) {
          for (int64_t i = 0; i < m; ++i) d[i] += std::max(g[i], 0.f);
        } else if (mask) {
          const uint8_t* on = mask + fwd + i0;
          if (rule == Rule::Guided)
            for (int64_t i = 0; i < m; ++i) d[i] += on[i] ? std::max(g[i], 0.f) : 0.f;
          else
            for (int64_t i = 0; i < m; ++i) d[i] += on[i] ? g[i] : 0.f;
        } else {
          const float* xx = x + fwd + i0;
          if (rule == Rule::Guided)
            for (int64_t i = 0; i < m; ++i) d[i] += xx[i] > 0.f ? std::max(g[i], 0.f) : 0.f;
          else
            for (int64_t i = 0; i < m; ++i) d[i] += xx[i] > 0.f ? g[i] : 0.f;
        }
      }
    }
  }

 public:
  Needs needs() const override { return {false, false, true, false}; }
};

}  // namespace

std::unique_ptr<Layer> make_relu(const LayerSpec& s) { return std::make_unique<Relu>(s); }

}  // namespace pydeconv
