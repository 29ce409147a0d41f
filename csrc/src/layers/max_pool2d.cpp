// max_pool2d: the window's maximum, recording its position (the switch) for the way back.
#include "layers.hpp"
#include "window_attrs.hpp"

namespace pydeconv {
namespace {

class MaxPool2d : public WindowLayer {
 public:
  using WindowLayer::WindowLayer;

  Shape shape(const std::vector<Shape>& in) override {
    parse_window({0, 0}, true, true, true);
    // Every window must hold an input element, so padding never wins.
    if (g_.pt >= rf().size_h || g_.pb >= rf().size_h || g_.pl >= rf().size_w ||
        g_.pr >= rf().size_w)
      bad("padding must be smaller than the window");
    // Windows that tile the input (stride = size, no dilation: VGG's 2x2/2) are written whole.
    caps_.backward_overwrites = g_.kh == g_.sh && g_.kw == g_.sw && g_.dh == 1 && g_.dw == 1;
    return window_out(in[0], in[0].c);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::max_pool2d_forward(ctx, *a.in[0], g_, *a.out, *a.switches);
  }

  // All rules: unpool, each value to its switch; overlapping windows' contributions sum.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::max_unpool2d(ctx, *a.gout, a.region, *a.switches, *a.gin[0], a.reps,
                          a.overwrite ? &g_ : nullptr);
  }
};

}  // namespace

std::unique_ptr<Layer> make_max_pool2d(const LayerSpec& s) {
  return std::make_unique<MaxPool2d>(s);
}

}  // namespace pydeconv
