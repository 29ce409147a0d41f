// sigmoid: y = 1/(1+e^-x). Saturating: g*s*(1-s) under every rule.
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class Sigmoid : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override { return act(kernels::Act::Sigmoid); }
};

}  // namespace

std::unique_ptr<Layer> make_sigmoid(const LayerSpec& s) { return std::make_unique<Sigmoid>(s); }

}  // namespace pydeconv
