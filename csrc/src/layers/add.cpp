// add: the element-wise sum of 2+ inputs of one shape (residual joins).
#include "layers.hpp"

namespace pydeconv {
namespace {

class Add : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    for (auto& s : in)
      if (!s.same_chw(in[0])) bad("inputs differ in shape: " + in[0].str() + " and " + s.str());
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::add_forward(ctx, a.in, *a.out);
  }

  // All rules: every input's gin += gout.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::add_backward(ctx, *a.gout, a.region, a.gin);
  }
};

}  // namespace

std::unique_ptr<Layer> make_add(const LayerSpec& s) { return std::make_unique<Add>(s); }

}  // namespace pydeconv
