// mul: the element-wise product of two inputs with broadcasting: each input's C, H, W equals the
// output's or is 1 (SE gates (C, 1, 1), spatial attention (1, H, W), scalars (1, 1, 1)).
#include "layers.hpp"

namespace pydeconv {
namespace {

class Mul : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    const Shape &a = in[0], &b = in[1];
    if (a.rank != b.rank || a.rank == 1)
      bad("inputs differ in rank: " + a.str() + " and " + b.str());
    auto dim = [&](int64_t x, int64_t y, const char* axis) {
      if (x == y || y == 1) return x;
      if (x == 1) return y;
      bad("inputs " + a.str() + " and " + b.str() + " do not broadcast: " + axis + " is " +
          std::to_string(x) + " and " + std::to_string(y) +
          " (each input's C, H, W must equal the other's or be 1)");
    };
    Shape out = a;
    out.c = dim(a.c, b.c, "C");
    out.h = dim(a.h, b.h, "H");
    out.w = dim(a.w, b.w, "W");
    // An input broadcast over space (a gate of one value per plane): every output reads it.
    spatial_broadcast_ = (a.h != out.h || a.w != out.w || b.h != out.h || b.w != out.w);
    return out;
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::mul_forward(ctx, *a.in[0], *a.in[1], *a.out);
  }

  // All rules (the product rule): gin_a += g * b, gin_b += g * a, each summed over the dims that
  // input was broadcast along (an SE gate's branch gets its share of the signal).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    if (!a.in[0] || !a.in[1])
      fail(ErrorKind::Value, "layer '" + name() + "': its inputs are not in this trace");
    kernels::mul_backward(ctx, *a.gout, a.region, *a.in[0], *a.in[1], a.gin[0], a.gin[1], a.reps);
  }

  // A spatially broadcast input (one value per plane) makes every output depend on its whole
  // receptive field: the union is taken as the whole image (what an SE gate's global pooling
  // reads anyway). Regions stay exact (input_region).
  RfStep rf() const override { return spatial_broadcast_ ? global_rf() : RfStep{}; }

  // Same-size inputs take the output's region; an axis of size 1 its one row or column.
  Region input_region(const Region& r, const Shape& in) const override {
    Region o = r;
    if (in.h == 1) o.y0 = 0, o.y1 = 1;
    if (in.w == 1) o.x0 = 0, o.x1 = 1;
    return o;
  }

 private:
  bool spatial_broadcast_ = false;
};

}  // namespace

std::unique_ptr<Layer> make_mul(const LayerSpec& s) { return std::make_unique<Mul>(s); }

}  // namespace pydeconv
