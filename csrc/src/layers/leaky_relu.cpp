// leaky_relu: y = x > 0 ? x : alpha*x. Rectifying: deconvnet relu(g); guided
// relu(g)*f'(x); backprop g*f'(x), f'(x) = x > 0 ? 1 : alpha.
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class LeakyRelu : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override {
    kernels::ActParams p = act(kernels::Act::LeakyRelu);
    p.alpha = static_cast<float>(num1("alpha"));
    return p;
  }
};

}  // namespace

std::unique_ptr<Layer> make_leaky_relu(const LayerSpec& s) {
  return std::make_unique<LeakyRelu>(s);
}

}  // namespace pydeconv
