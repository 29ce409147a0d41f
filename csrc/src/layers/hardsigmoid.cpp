// hardsigmoid: y = max(0, min(1, alpha*x+beta)) (ONNX defaults 0.2, 0.5; torch's is
// alpha 1/6). Saturating: g*alpha*[0 < alpha*x+beta < 1] under every rule.
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class HardSigmoid : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override {
    kernels::ActParams p = act(kernels::Act::HardSigmoid);
    p.alpha = static_cast<float>(num1("alpha"));
    p.beta = static_cast<float>(num1("beta"));
    return p;
  }
};

}  // namespace

std::unique_ptr<Layer> make_hardsigmoid(const LayerSpec& s) {
  return std::make_unique<HardSigmoid>(s);
}

}  // namespace pydeconv
