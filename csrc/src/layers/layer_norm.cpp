// layer_norm over channels at each position (ConvNeXt's channels-first LayerNorm):
// y = (x - mean_c) / sqrt(var_c + epsilon) * scale[c] + bias[c].
#include <string>

#include "layers.hpp"

namespace pydeconv {
namespace {

class LayerNorm : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    eps_ = num1("epsilon");
    scale_ = param("scale");
    bias_ = param("bias");
    if (in[0].rank != 4) bad("needs a (N, C, H, W) input, got " + in[0].str());
    const int64_t c = in[0].c;
    if (scale_->shape().rank != 1 || scale_->shape().n != c)
      bad("parameter 'scale' must have shape (" + std::to_string(c) + ",)");
    if (bias_ && (bias_->shape().rank != 1 || bias_->shape().n != c))
      bad("parameter 'bias' must have shape (" + std::to_string(c) + ",)");
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::layer_norm_forward(ctx, *a.in[0], scale_->data(), bias_ ? bias_->data() : nullptr,
                                eps_, *a.out);
  }

  // All rules: gin += J(x)^T gout, the layer norm's Jacobian at the forward input x (bias unused).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::layer_norm_backward(ctx, *a.in[0], *a.gout, a.region, scale_->data(), eps_, *a.gin[0],
                                 a.reps);
  }

 private:
  double eps_ = 1e-5;
  const Tensor* scale_ = nullptr;
  const Tensor* bias_ = nullptr;
};

}  // namespace

std::unique_ptr<Layer> make_layer_norm(const LayerSpec& s) {
  return std::make_unique<LayerNorm>(s);
}

}  // namespace pydeconv
