// dropout: the identity at inference (its ratio is unused), a copy.
#include <algorithm>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Dropout : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override { return in[0]; }

  void forward(const Ctx&, ForwardArgs& a) const override {
    std::copy(a.in[0]->data(), a.in[0]->data() + a.in[0]->numel(), a.out->data());
  }

  // All rules: gin += gout.
  void backward(const Ctx&, BackwardArgs& a) const override {
    const float* g = a.gout->data();
    float* d = a.gin[0]->data();
    for (int64_t i = 0; i < a.gout->numel(); ++i) d[i] += g[i];
  }
};

}  // namespace

std::unique_ptr<Layer> make_dropout(const LayerSpec& s) { return std::make_unique<Dropout>(s); }

}  // namespace pydeconv
