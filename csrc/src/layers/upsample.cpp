// upsample: by integer factors `scale` [sh, sw], nearest (out[y, x] = in[y / sh, x / sw]) or
// bilinear (PyTorch's interpolate(scale_factor, mode="bilinear", align_corners)).
#include "layers.hpp"

namespace pydeconv {
namespace {

class Upsample : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    if (in[0].rank != 4) bad("needs a (N, C, H, W) input, got " + in[0].str());
    auto s = ints("scale", {});
    if (s.size() == 1) s.push_back(s[0]);
    u_.sh = s[0];
    u_.sw = s[1];
    u_.bilinear = int1("bilinear") != 0;
    u_.align_corners = int1("align_corners") != 0;
    return Shape::nchw(in[0].n, in[0].c, in[0].h * u_.sh, in[0].w * u_.sw);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::upsample_forward(ctx, *a.in[0], u_, *a.out);
  }

  // All rules: the exact transpose (each input pixel sums the outputs it feeds, with their
  // bilinear weights).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::upsample_backward(ctx, *a.gout, a.region, u_, *a.gin[0]);
  }

  // RfStep::up: input i sits at i * s of the spread-out input. Nearest: output p reads i = p / s,
  // i.e. p - (s - 1) <= i * s <= p: window s, pad s - 1. Bilinear: its two taps lie within
  // [p / s - 1, p / s + 1] (both align_corners), i.e. p - (2s - 1) <= i * s <= p + s: window 3s,
  // pad 2s - 1. A factor of 1 is the identity.
  RfStep rf() const override {
    RfStep r;
    r.up_h = u_.sh;
    r.up_w = u_.sw;
    const int64_t kh = u_.bilinear && u_.sh > 1 ? 3 : 1, kw = u_.bilinear && u_.sw > 1 ? 3 : 1;
    r.size_h = kh * u_.sh;
    r.size_w = kw * u_.sw;
    r.pad_h = (kh == 3 ? 2 * u_.sh : u_.sh) - 1;
    r.pad_w = (kw == 3 ? 2 * u_.sw : u_.sw) - 1;
    return r;
  }

 private:
  kernels::UpsampleGeom u_;
};

}  // namespace

std::unique_ptr<Layer> make_upsample(const LayerSpec& s) { return std::make_unique<Upsample>(s); }

}  // namespace pydeconv
