// clip: y = min(max(x, min), max). With min == 0 (ReLU6) it rectifies: deconvnet
// relu(g); guided relu(g)*f'(x); backprop g*f'(x); with any other min, g*f'(x) under every rule;
// f'(x) = [min < x < max].
#include "layers/activation.hpp"

namespace pydeconv {
namespace {

class Clip : public ActivationLayer {
 public:
  using ActivationLayer::ActivationLayer;

 protected:
  kernels::ActParams params(const Shape&) override {
    kernels::ActParams p = act(kernels::Act::Clip);
    const double lo = num1("min"), hi = num1("max");
    if (lo > hi)
      bad("attribute 'min' (" + std::to_string(lo) + ") is above 'max' (" + std::to_string(hi) +
          ")");
    p.lo = static_cast<float>(lo);
    p.hi = static_cast<float>(hi);
    rectifying_ = lo == 0;
    return p;
  }
};

}  // namespace

std::unique_ptr<Layer> make_clip(const LayerSpec& s) { return std::make_unique<Clip>(s); }

}  // namespace pydeconv
