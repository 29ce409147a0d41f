// gelu: y = 0.5x(1+erf(x/sqrt2)), or with tanh = 1 the tanh form
// 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))). Rectifying: deconvnet relu(g); guided
// relu(g)*f'(x); backprop g*f'(x).
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class Gelu : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override {
    return act(int1("tanh") != 0 ? kernels::Act::GeluTanh : kernels::Act::Gelu);
  }
};

}  // namespace

std::unique_ptr<Layer> make_gelu(const LayerSpec& s) { return std::make_unique<Gelu>(s); }

}  // namespace pydeconv
