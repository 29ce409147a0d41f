// add: the element-wise sum of 2+ inputs of one shape (residual joins); with `weights`, the
// weighted sum sum_k w[k] * x_k (ONNX Sub of two tensors: weights [1, -1]).
#include <string>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Add : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    for (auto& s : in)
      if (!s.same_chw(in[0])) bad("inputs differ in shape: " + in[0].str() + " and " + s.str());
    weights_.clear();
    auto it = spec_.attrs.find("weights");
    if (it != spec_.attrs.end()) {
      if (it->second.size() != in.size())
        bad("attribute 'weights' has " + std::to_string(it->second.size()) + " values for " +
            std::to_string(in.size()) + " inputs");
      bool ones = true;
      for (double w : it->second) {
        weights_.push_back(static_cast<float>(w));
        ones = ones && w == 1.0;
      }
      if (ones) weights_.clear();
      // The weighted kernels go over whole tensors (reference only).
      if (!weights_.empty()) caps_.backward_region_only = false;
    }
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    if (!weights_.empty()) return kernels::add_weighted_forward_ref(a.in, weights_, *a.out);
    kernels::add_forward(ctx, a.in, *a.out);
  }

  // All rules: every input's gin += gout (times its weight).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    if (!weights_.empty()) return kernels::add_weighted_backward_ref(*a.gout, weights_, a.gin);
    kernels::add_backward(ctx, *a.gout, a.region, a.gin);
  }

 private:
  std::vector<float> weights_;  // empty: all 1
};

}  // namespace

std::unique_ptr<Layer> make_add(const LayerSpec& s) { return std::make_unique<Add>(s); }

}  // namespace pydeconv
