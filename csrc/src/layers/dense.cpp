// linear, flatten, dropout, softmax.
#include <algorithm>

#include "layers.hpp"

namespace pydeconv {
namespace {

// Shared by layers whose every output depends on every input position.
class GlobalLayer : public Layer {
 public:
  using Layer::Layer;
  RfStep rf() const override {
    RfStep s;
    s.global = true;
    return s;
  }
};

class Linear : public GlobalLayer {
 public:
  using GlobalLayer::GlobalLayer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({});
    check_params({"weight", "bias"});
    weight_ = param("weight", true);
    bias_ = param("bias", false);
    const Shape& ws = weight_->shape();
    if (ws.rank != 2) bad("parameter 'weight' must be (out, in), got " + ws.str());
    // A rank-2 param of shape (out, in) is stored as Shape::nc(out, in).
    if (ws.c != in[0].sample())
      bad("parameter 'weight' " + ws.str() + " expects " + std::to_string(ws.c) +
          " input features, the input " + in[0].str() + " has " + std::to_string(in[0].sample()));
    if (bias_ && (bias_->shape().rank != 1 || bias_->shape().n != ws.n))
      bad("parameter 'bias' must have shape (" + std::to_string(ws.n) + ",)");
    return Shape::nc(in[0].n, ws.n);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::linear_forward(ctx, *a.in[0], *weight_, bias_ ? bias_->data() : nullptr, *a.out);
  }

  // All rules: gin += W^T gout, bias unused.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::linear_backward(ctx, *a.gout, *weight_, *a.gin[0]);
  }

 private:
  const Tensor* weight_ = nullptr;
  const Tensor* bias_ = nullptr;
};

// Copies its input (flatten, dropout at inference): back, the signal is copied unchanged.
class Passthrough : public Layer {
 public:
  Passthrough(const LayerSpec& s, bool flatten) : Layer(s), flatten_(flatten) {}

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_params({});
    if (flatten_) check_attrs({});
    else check_attrs({"ratio"});
    return flatten_ ? Shape::nc(in[0].n, in[0].sample()) : in[0];
  }

  void forward(const Ctx&, ForwardArgs& a) const override {
    std::copy(a.in[0]->data(), a.in[0]->data() + a.in[0]->numel(), a.out->data());
  }

  // All rules: gin += gout (reshaped).
  void backward(const Ctx&, BackwardArgs& a) const override {
    const float* g = a.gout->data();
    float* d = a.gin[0]->data();
    for (int64_t i = 0; i < a.gout->numel(); ++i) d[i] += g[i];
  }

  RfStep rf() const override {
    RfStep s;
    s.global = flatten_;
    return s;
  }

 private:
  bool flatten_;
};

// Softmax mixes channels only, so its spatial receptive field is the identity.
class Softmax : public Layer {
 public:
  using Layer::Layer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({});
    check_params({});
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::softmax_forward(ctx, *a.in[0], *a.out);
  }

  // All rules: the softmax Jacobian at the forward output.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::softmax_backward(ctx, *a.out, *a.gout, *a.gin[0], a.reps);
  }

  Needs needs() const override { return {false, true, false, false}; }
};

}  // namespace

std::unique_ptr<Layer> make_linear(const LayerSpec& s) { return std::make_unique<Linear>(s); }
std::unique_ptr<Layer> make_flatten(const LayerSpec& s) {
  return std::make_unique<Passthrough>(s, true);
}
std::unique_ptr<Layer> make_dropout(const LayerSpec& s) {
  return std::make_unique<Passthrough>(s, false);
}
std::unique_ptr<Layer> make_softmax(const LayerSpec& s) { return std::make_unique<Softmax>(s); }

}  // namespace pydeconv
