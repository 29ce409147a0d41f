// relu: y = max(x, 0). The only layer where the three projection rules differ.
#include "layers.hpp"

namespace pydeconv {
namespace {

class Relu : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override { return in[0]; }

  // y = relu(x), [x > 0] into the mask under keep='minimal'; y may be x itself (in place).
  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::relu_forward(ctx, a.in[0]->data(), a.out->data(),
                          a.mask != nullptr ? a.mask->data() : nullptr, a.out->numel());
  }

  // deconvnet gin += relu(g); guided gin += relu(g) * [x > 0]; backprop gin += g * [x > 0].
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    const uint8_t* mask = a.mask ? a.mask->data() : nullptr;
    const float* x = a.in.empty() || !a.in[0] ? nullptr : a.in[0]->data();
    if (a.rule != Rule::Deconvnet && !mask && !x)
      fail(ErrorKind::Value, "layer '" + name() + "': the ReLU masks were not kept");
    kernels::relu_backward(ctx, *a.gout, a.region, x, mask, a.rule != Rule::Backprop,
                           a.rule != Rule::Deconvnet, *a.gin[0], a.reps);
  }
};

}  // namespace

std::unique_ptr<Layer> make_relu(const LayerSpec& s) { return std::make_unique<Relu>(s); }

}  // namespace pydeconv
