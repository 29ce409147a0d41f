// Internal: what the element-wise activation kinds share (issue 14: leaky_relu, prelu, clip,
// sigmoid, tanh, silu, hardsigmoid, hardswish, mish, elu, gelu; one file each declares its
// kernel parameters and checks). Output shape = input shape; the backward reads the forward
// input x (the row's kNeedsInput).
#pragma once
#include "layers/layers.hpp"

namespace pydeconv {

class ActivationLayer : public Layer {
 public:
  using Layer::Layer;

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::activation_forward(ctx, *a.in[0], p_, *a.out);
  }

  // A rectifying layer (rectifying()): deconvnet gin += relu(g); guided gin += relu(g) * f'(x);
  // backprop gin += g * f'(x). Any other: gin += g * f'(x) under every rule.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    if (a.in.empty() || !a.in[0])
      fail(ErrorKind::Value, "layer '" + name() + "': its input is not in this trace");
    kernels::ActDown down = kernels::ActDown::Gradient;
    if (rectifying() && a.rule == Rule::Deconvnet) down = kernels::ActDown::Rectify;
    if (rectifying() && a.rule == Rule::Guided) down = kernels::ActDown::Guided;
    kernels::activation_backward(ctx, *a.gout, a.region, *a.in[0], p_, down, *a.gin[0], a.reps);
  }

 protected:
  Shape shape(const std::vector<Shape>& in) override {
    p_ = params(in[0]);
    return in[0];
  }
  // The kernel parameters, after the kind's own checks (bad(...)).
  virtual kernels::ActParams params(const Shape& in) = 0;

  kernels::ActParams p_;
};

// The parameters of a kind without attributes.
inline kernels::ActParams act(kernels::Act op) {
  kernels::ActParams p;
  p.op = op;
  return p;
}

}  // namespace pydeconv
