// affine: y = x * scale[c] + bias[c] with constant per-channel (C,) or scalar (1,) scale and bias,
// each optional (at least one): Sub/Div/Mul/Add by constants that cannot fold into a conv.
#include <vector>

#include "channel_affine.hpp"

namespace pydeconv {
namespace {

class Affine : public ChannelAffineLayer {
 public:
  using ChannelAffineLayer::ChannelAffineLayer;

  Shape shape(const std::vector<Shape>& in) override {
    const int64_t c = in[0].c;
    const Tensor* scale = param("scale");
    const Tensor* bias = param("bias");
    if (!scale && !bias) bad("needs parameter 'scale' or 'bias' (or both)");
    a_.assign(static_cast<size_t>(c), 1.f);
    b_.assign(static_cast<size_t>(c), 0.f);
    expand(scale, "scale", c, a_);
    expand(bias, "bias", c, b_);
    return in[0];
  }

 private:
  // A (C,) or (1,) parameter, one value per channel.
  void expand(const Tensor* p, const char* key, int64_t c, std::vector<float>& out) const {
    if (!p) return;
    const Shape& s = p->shape();
    if (s.rank != 1 || (s.n != c && s.n != 1))
      bad(std::string("parameter '") + key + "' must have shape (" + std::to_string(c) +
          ",) or (1,), got " + s.str());
    for (int64_t i = 0; i < c; ++i) out[static_cast<size_t>(i)] = p->data()[s.n == 1 ? 0 : i];
  }
};

}  // namespace

std::unique_ptr<Layer> make_affine(const LayerSpec& s) { return std::make_unique<Affine>(s); }

}  // namespace pydeconv
