// pad: constant (`value`) or reflect (PyTorch's F.pad mode="reflect") padding of H and W by
// `padding` [top, left, bottom, right].
#include <algorithm>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Pad : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    const Shape& s = in[0];
    if (s.rank != 4) bad("needs a (N, C, H, W) input, got " + s.str());
    auto p = ints("padding", {});
    if (p.size() == 3)
      bad("attribute 'padding' takes 1, 2 or 4 values ([top, left, bottom, right])");
    if (p.size() == 1) p = {p[0], p[0], p[0], p[0]};
    if (p.size() == 2) p = {p[0], p[1], p[0], p[1]};
    p_.t = p[0];
    p_.l = p[1];
    p_.b = p[2];
    p_.r = p[3];
    p_.value = static_cast<float>(num1("value"));
    p_.reflect = int1("reflect") != 0;
    if (p_.reflect) {
      if (p_.value != 0.f) bad("attribute 'value' applies to constant padding only, not reflect");
      if (p_.t >= s.h || p_.b >= s.h || p_.l >= s.w || p_.r >= s.w)
        bad("attribute 'padding' [" + std::to_string(p_.t) + ", " + std::to_string(p_.l) + ", " +
            std::to_string(p_.b) + ", " + std::to_string(p_.r) +
            "]: reflect padding must be smaller than the input's size " + std::to_string(s.h) +
            "x" + std::to_string(s.w));
    }
    return Shape::nchw(s.n, s.c, s.h + p_.t + p_.b, s.w + p_.l + p_.r);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    (void)ctx;
    kernels::pad_forward_ref(*a.in[0], p_, *a.out);
  }

  // All rules: crop the padding away (reflect: the mirrored parts are added back onto the pixels
  // they copy: the exact gradient).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    (void)ctx;
    kernels::pad_backward_ref(*a.gout, p_, *a.gin[0]);
  }

  // Output p is input p - top (constant padding reads nothing outside).
  RfStep rf() const override {
    RfStep r;
    r.pad_h = p_.t;
    r.pad_w = p_.l;
    return r;
  }

  // Constant padding: the crop, empty (canonical, nothing to clear or read) when the region lies
  // in the padding alone. Reflect: the span the region's rows and columns fold onto.
  Region input_region(const Region& r, const Shape& in) const override {
    if (!p_.reflect || r.empty()) {
      const Region o = Layer::input_region(r, in);
      return o.empty() ? Region{0, 0, 0, 0} : o;
    }
    Region o;
    fold(r.y0 - p_.t, r.y1 - 1 - p_.t, in.h, o.y0, o.y1);
    fold(r.x0 - p_.l, r.x1 - 1 - p_.l, in.w, o.x0, o.x1);
    return o;
  }

 private:
  // The input span [lo, hi) that reflected positions [a, b] (a <= b, within one reflection of
  // [0, n)) read.
  static void fold(int64_t a, int64_t b, int64_t n, int64_t& lo, int64_t& hi) {
    lo = n;
    hi = 0;
    auto take = [&](int64_t i0, int64_t i1) {  // an inclusive span, already inside [0, n)
      if (i0 > i1) return;
      lo = std::min(lo, i0);
      hi = std::max(hi, i1 + 1);
    };
    take(std::max<int64_t>(a, 0), std::min(b, n - 1));                // inside
    if (a < 0) take(std::max<int64_t>(1, -b), -a);                    // mirrored at the top
    if (b >= n) take(2 * (n - 1) - b, 2 * (n - 1) - std::max(a, n));  // and at the bottom
  }

  kernels::Pad2d p_;
};

}  // namespace

std::unique_ptr<Layer> make_pad(const LayerSpec& s) { return std::make_unique<Pad>(s); }

}  // namespace pydeconv
