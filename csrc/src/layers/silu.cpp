// silu: y = x*sigmoid(x) (swish). Rectifying: deconvnet relu(g); guided relu(g)*f'(x);
// backprop g*f'(x), f'(x) = s*(1+x*(1-s)).
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class Silu : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override { return act(kernels::Act::Silu); }
};

}  // namespace

std::unique_ptr<Layer> make_silu(const LayerSpec& s) { return std::make_unique<Silu>(s); }

}  // namespace pydeconv
