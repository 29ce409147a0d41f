// mish: y = x*tanh(softplus(x)). Rectifying: deconvnet relu(g); guided relu(g)*f'(x);
// backprop g*f'(x).
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class Mish : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override { return act(kernels::Act::Mish); }
};

}  // namespace

std::unique_ptr<Layer> make_mish(const LayerSpec& s) { return std::make_unique<Mish>(s); }

}  // namespace pydeconv
