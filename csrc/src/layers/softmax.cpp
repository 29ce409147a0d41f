// softmax over channels. It mixes channels only, so its spatial receptive field is the identity.
#include "layers.hpp"

namespace pydeconv {
namespace {

class Softmax : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override { return in[0]; }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::softmax_forward(ctx, *a.in[0], *a.out);
  }

  // All rules: gin += J(y)^T gout, the softmax Jacobian at the forward output y.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::softmax_backward(ctx, *a.out, *a.gout, *a.gin[0], a.reps);
  }
};

}  // namespace

std::unique_ptr<Layer> make_softmax(const LayerSpec& s) { return std::make_unique<Softmax>(s); }

}  // namespace pydeconv
