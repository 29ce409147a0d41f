// linear: y = W x + b over the flattened input.
#include "layers.hpp"

namespace pydeconv {
namespace {

class Linear : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    weight_ = param("weight");
    bias_ = param("bias");
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
    kernels::linear_backward(ctx, *a.gout, *weight_, *a.gin[0],
                             a.choose_by ? static_cast<int64_t>(a.choose_by->size()) : 0);
  }

  RfStep rf() const override { return global_rf(); }

 private:
  const Tensor* weight_ = nullptr;
  const Tensor* bias_ = nullptr;
};

}  // namespace

std::unique_ptr<Layer> make_linear(const LayerSpec& s) { return std::make_unique<Linear>(s); }

}  // namespace pydeconv
