// affine: y = x * scale + bias with constant scale and bias, each optional (at least one): Sub/Div/
// Mul/Add by constants that cannot fold into a conv. Each is per channel (C,), a scalar (1,), or a
// tensor (1, C|1, H|1, W|1) broadcast over the sample (a detection head's anchor points and
// strides).
#include <string>
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
    const bool broadcast = (scale && scale->shape().rank == 4) || (bias && bias->shape().rank == 4);
    full_a_.clear();
    full_b_.clear();
    if (broadcast) {
      if (in[0].rank != 4)
        bad("a (1, C, H, W) parameter needs an (N, C, H, W) input, got " + in[0].str());
      full_a_.assign(static_cast<size_t>(in[0].sample()), 1.f);
      full_b_.assign(static_cast<size_t>(in[0].sample()), 0.f);
      expand_full(scale, "scale", in[0], full_a_);
      expand_full(bias, "bias", in[0], full_b_);
      caps_.backward_region_only = false;  // the broadcast kernels go over whole tensors
      return in[0];
    }
    a_.assign(static_cast<size_t>(c), 1.f);
    b_.assign(static_cast<size_t>(c), 0.f);
    expand(scale, "scale", c, a_);
    expand(bias, "bias", c, b_);
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    if (full_a_.empty()) return ChannelAffineLayer::forward(ctx, a);
    kernels::broadcast_affine_forward_ref(*a.in[0], full_a_.data(), full_b_.data(), *a.out);
  }

  // All rules: gin += gout * scale (broadcast); the bias is unused.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    if (full_a_.empty()) return ChannelAffineLayer::backward(ctx, a);
    kernels::broadcast_affine_backward_ref(*a.gout, full_a_.data(), *a.gin[0]);
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

  // Any accepted parameter as one value per element of a sample of shape `x`.
  void expand_full(const Tensor* p, const char* key, const Shape& x,
                   std::vector<float>& out) const {
    if (!p) return;
    const Shape& s = p->shape();
    const bool ok = s.rank == 4 ? s.n == 1 && (s.c == 1 || s.c == x.c) &&
                                      (s.h == 1 || s.h == x.h) && (s.w == 1 || s.w == x.w)
                                : s.rank == 1 && (s.n == 1 || s.n == x.c);
    if (!ok)
      bad(std::string("parameter '") + key + "' of shape " + s.str() +
          " does not broadcast to the input " + x.str() + " (expected (" + std::to_string(x.c) +
          ",), (1,) or (1, C|1, H|1, W|1))");
    for (int64_t c = 0; c < x.c; ++c)
      for (int64_t y = 0; y < x.h; ++y)
        for (int64_t w = 0; w < x.w; ++w) {
          int64_t k;
          if (s.rank == 1)
            k = s.n == 1 ? 0 : c;
          else
            k = ((s.c == 1 ? 0 : c) * s.h + (s.h == 1 ? 0 : y)) * s.w + (s.w == 1 ? 0 : w);
          out[static_cast<size_t>((c * x.h + y) * x.w + w)] = p->data()[k];
        }
  }

  std::vector<float> full_a_, full_b_;  // per element of a sample; empty: per channel (a_, b_)
};

}  // namespace

std::unique_ptr<Layer> make_affine(const LayerSpec& s) { return std::make_unique<Affine>(s); }

}  // namespace pydeconv
