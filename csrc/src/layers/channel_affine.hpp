// pydeconv (internal): the base of the kinds that are a per-channel affine map at inference,
// y = x * a[c] + b[c] (batch_norm, affine). A kind computes a and b from its parameters in
// shape(); going down, under every rule, gin += gout * a[c] (b is a bias: unused).
#pragma once
#include <vector>

#include "layers.hpp"

namespace pydeconv {

class ChannelAffineLayer : public Layer {
 public:
  using Layer::Layer;

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::channel_affine_forward(ctx, *a.in[0], a_.data(), b_.data(), *a.out);
  }

  // All rules: gin += gout * a[c].
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::channel_affine_backward(ctx, *a.gout, a.region, a_.data(), *a.gin[0]);
  }

 protected:
  std::vector<float> a_, b_;  // per channel, set by the kind's shape()
};

}  // namespace pydeconv
