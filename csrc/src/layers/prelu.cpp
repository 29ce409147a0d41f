// prelu: y = x > 0 ? x : slope[c]*x, one slope per channel. Rectifying: deconvnet
// relu(g); guided relu(g)*f'(x); backprop g*f'(x), f'(x) = x > 0 ? 1 : slope[c].
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class Prelu : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape& in) override {
    const Tensor* slope = param("slope");
    if (slope->numel() != in.c)
      bad("parameter 'slope' has " + std::to_string(slope->numel()) +
          " values, expected one per input channel (" + std::to_string(in.c) + ")");
    kernels::ActParams p = act(kernels::Act::LeakyRelu);
    p.slope = slope->data();
    return p;
  }
};

}  // namespace

std::unique_ptr<Layer> make_prelu(const LayerSpec& s) { return std::make_unique<Prelu>(s); }

}  // namespace pydeconv
