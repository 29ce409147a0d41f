// avg_pool2d: the window's mean (over its in-image elements, or with count_include_pad over the
// window clipped to the padded image).
#include "layers.hpp"
#include "window_attrs.hpp"

namespace pydeconv {
namespace {

class AvgPool2d : public WindowLayer {
 public:
  using WindowLayer::WindowLayer;

  Shape shape(const std::vector<Shape>& in) override {
    parse_window({0, 0}, true, false, true);
    include_pad_ = int1("count_include_pad") != 0;
    if (g_.pt >= g_.kh || g_.pb >= g_.kh || g_.pl >= g_.kw || g_.pr >= g_.kw)
      bad("padding must be smaller than the window");
    return window_out(in[0], in[0].c);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::avg_pool2d_forward(ctx, *a.in[0], g_, include_pad_, *a.out);
  }

  // All rules: spread each value evenly over its window (the exact gradient).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::avg_pool2d_backward(ctx, *a.gout, g_, include_pad_, *a.gin[0]);
  }

 private:
  bool include_pad_ = false;
};

}  // namespace

std::unique_ptr<Layer> make_avg_pool2d(const LayerSpec& s) {
  return std::make_unique<AvgPool2d>(s);
}

}  // namespace pydeconv
