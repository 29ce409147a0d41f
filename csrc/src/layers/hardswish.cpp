// hardswish: y = x*max(0, min(1, x/6+1/2)). Rectifying: deconvnet relu(g); guided
// relu(g)*f'(x); backprop g*f'(x), f' as torch 2.13's hardswish_backward: 0 (x <= -3), x/3+1/2
// (strictly inside), 1 (x >= 3).
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class HardSwish : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override { return act(kernels::Act::HardSwish); }
};

}  // namespace

std::unique_ptr<Layer> make_hardswish(const LayerSpec& s) { return std::make_unique<HardSwish>(s); }

}  // namespace pydeconv
