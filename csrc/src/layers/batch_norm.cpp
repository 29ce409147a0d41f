// batch_norm at inference: a per-channel affine y = x * a[c] + b[c], with
// a = scale / sqrt(var + epsilon) and b = bias - mean * a.
#include <cmath>
#include <vector>

#include "channel_affine.hpp"

namespace pydeconv {
namespace {

class BatchNorm : public ChannelAffineLayer {
 public:
  using ChannelAffineLayer::ChannelAffineLayer;

  Shape shape(const std::vector<Shape>& in) override {
    const double eps = num1("epsilon");
    const int64_t c = in[0].c;
    const Tensor* p[4];
    const char* names[4] = {"scale", "bias", "mean", "var"};
    for (int i = 0; i < 4; ++i) {
      p[i] = param(names[i]);
      if (p[i]->shape().rank != 1 || p[i]->shape().n != c)
        bad(std::string("parameter '") + names[i] + "' must have shape (" + std::to_string(c) +
            ",)");
    }
    a_.resize(static_cast<size_t>(c));
    b_.resize(static_cast<size_t>(c));
    for (int64_t i = 0; i < c; ++i) {
      const double var = p[3]->data()[i];
      if (var + eps <= 0) bad("parameter 'var' + epsilon must be positive");
      const double a = p[0]->data()[i] / std::sqrt(var + eps);
      a_[i] = static_cast<float>(a);
      b_[i] = static_cast<float>(p[1]->data()[i] - p[2]->data()[i] * a);
    }
    return in[0];
  }
};

}  // namespace

std::unique_ptr<Layer> make_batch_norm(const LayerSpec& s) {
  return std::make_unique<BatchNorm>(s);
}

}  // namespace pydeconv
