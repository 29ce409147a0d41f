// global_avg_pool: each plane to its mean, (N, C, H, W) -> (N, C, 1, 1).
#include "layers.hpp"

namespace pydeconv {
namespace {

class GlobalAvgPool : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    if (in[0].rank != 4) bad("needs a (N, C, H, W) input, got " + in[0].str());
    return Shape::nchw(in[0].n, in[0].c, 1, 1);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::global_avg_pool_forward(ctx, *a.in[0], *a.out);
  }

  // All rules: spread each value evenly over the whole plane.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::global_avg_pool_backward(ctx, *a.gout, *a.gin[0]);
  }

  RfStep rf() const override { return global_rf(); }
};

}  // namespace

std::unique_ptr<Layer> make_global_avg_pool(const LayerSpec& s) {
  return std::make_unique<GlobalAvgPool>(s);
}

}  // namespace pydeconv
