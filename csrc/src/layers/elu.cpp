// elu: y = x > 0 ? x : alpha*(e^x-1). Rectifying: deconvnet relu(g); guided relu(g)*f'(x);
// backprop g*f'(x), f'(x) = x > 0 ? 1 : alpha*e^x.
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class Elu : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override {
    kernels::ActParams p = act(kernels::Act::Elu);
    p.alpha = static_cast<float>(num1("alpha"));
    return p;
  }
};

}  // namespace

std::unique_ptr<Layer> make_elu(const LayerSpec& s) { return std::make_unique<Elu>(s); }

}  // namespace pydeconv
