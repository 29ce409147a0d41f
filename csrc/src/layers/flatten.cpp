// flatten: (N, C, H, W) -> (N, C*H*W), a copy.
#include <algorithm>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Flatten : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override { return Shape::nc(in[0].n, in[0].sample()); }

  void forward(const Ctx&, ForwardArgs& a) const override {
    std::copy(a.in[0]->data(), a.in[0]->data() + a.in[0]->numel(), a.out->data());
  }

  // All rules: gin += gout, reshaped back.
  void backward(const Ctx&, BackwardArgs& a) const override {
    const float* g = a.gout->data();
    float* d = a.gin[0]->data();
    for (int64_t i = 0; i < a.gout->numel(); ++i) d[i] += g[i];
  }

  RfStep rf() const override { return global_rf(); }
};

}  // namespace

std::unique_ptr<Layer> make_flatten(const LayerSpec& s) { return std::make_unique<Flatten>(s); }

}  // namespace pydeconv
