// concat: 2+ inputs of one spatial size joined along the channels (axis 1).
#include "layers.hpp"

namespace pydeconv {
namespace {

class Concat : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    Shape out = in[0];
    out.c = 0;
    for (auto& s : in) {
      if (s.rank != in[0].rank || s.h != in[0].h || s.w != in[0].w)
        bad("inputs differ in rank or spatial size: " + in[0].str() + " and " + s.str());
      out.c += s.c;
    }
    return out;
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::concat_forward(ctx, a.in, *a.out);
  }

  // All rules: each input's gin += its own slice of gout's channels.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::concat_backward(ctx, *a.gout, a.region, a.gin);
  }
};

}  // namespace

std::unique_ptr<Layer> make_concat(const LayerSpec& s) { return std::make_unique<Concat>(s); }

}  // namespace pydeconv
