// lrn: cross-channel local response normalisation, y_c = x_c / (bias + alpha/size sum x_j^2)^beta.
#include "layers.hpp"

namespace pydeconv {
namespace {

class Lrn : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    p_.size = int1("size");
    p_.alpha = num1("alpha");
    p_.beta = num1("beta");
    p_.bias = num1("bias");
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::lrn_forward(ctx, *a.in[0], p_, *a.out);
  }

  // All rules: gin += J(x)^T gout, the LRN Jacobian at the forward input x.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::lrn_backward(ctx, *a.in[0], *a.gout, a.region, p_, *a.gin[0], a.reps);
  }

 private:
  kernels::LrnParams p_;
};

}  // namespace

std::unique_ptr<Layer> make_lrn(const LayerSpec& s) { return std::make_unique<Lrn>(s); }

}  // namespace pydeconv
