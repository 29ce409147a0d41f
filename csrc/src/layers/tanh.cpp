// tanh: y = tanh x. Saturating: g*(1-tanh(x)^2) under every rule.
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class Tanh : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override { return act(kernels::Act::Tanh); }
};

}  // namespace

std::unique_ptr<Layer> make_tanh(const LayerSpec& s) { return std::make_unique<Tanh>(s); }

}  // namespace pydeconv
