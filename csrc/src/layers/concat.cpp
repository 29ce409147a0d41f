// concat: 2+ inputs joined along the channels (axis 1, the default: inputs of one spatial size), or
// along the rows (axis 2) or columns (axis 3) of inputs with the same other dims (a detection
// head's (C, 1, H*W) maps of each scale joined into one row of anchors).
#include <string>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Concat : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    axis_ = static_cast<int>(int1("axis"));
    if (axis_ > 3)
      bad("attribute 'axis' is " + std::to_string(axis_) + ": must be 1 (C), 2 (H) or 3 (W)");
    Shape out = in[0];
    if (axis_ == 1) {
      out.c = 0;
      for (auto& s : in) {
        if (s.rank != in[0].rank || s.h != in[0].h || s.w != in[0].w)
          bad("inputs differ in rank or spatial size: " + in[0].str() + " and " + s.str());
        out.c += s.c;
      }
      return out;
    }
    // Along H or W: every output row/column depends on one input only, but which one is not a
    // window: the regions go back whole (rf), and the backward reads all of gout.
    caps_.backward_region_only = false;
    int64_t& along = axis_ == 2 ? out.h : out.w;
    along = 0;
    for (auto& s : in) {
      const bool same = s.rank == 4 && in[0].rank == 4 && s.c == in[0].c &&
                        (axis_ == 2 ? s.w == in[0].w : s.h == in[0].h);
      if (!same)
        bad("attribute 'axis' " + std::to_string(axis_) + ": inputs " + in[0].str() + " and " +
            s.str() + " differ in a dim other than " + (axis_ == 2 ? "H" : "W"));
      along += axis_ == 2 ? s.h : s.w;
    }
    return out;
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    if (axis_ != 1) return kernels::concat_axis_forward_ref(a.in, axis_, *a.out);
    kernels::concat_forward(ctx, a.in, *a.out);
  }

  // All rules: each input's gin += its own slice of gout (its channels, rows or columns).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    if (axis_ != 1) return kernels::concat_axis_backward_ref(*a.gout, axis_, a.gin);
    kernels::concat_backward(ctx, *a.gout, a.region, a.gin);
  }

  RfStep rf() const override { return axis_ == 1 ? RfStep{} : global_rf(); }

 private:
  int axis_ = 1;
};

}  // namespace

std::unique_ptr<Layer> make_concat(const LayerSpec& s) { return std::make_unique<Concat>(s); }

}  // namespace pydeconv
