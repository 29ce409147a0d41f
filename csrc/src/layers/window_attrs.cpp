#include "window_attrs.hpp"

namespace pydeconv {

// Arity, integer values and signs are the schema's (checked before the kind's shape rule); what
// is left here is the geometry the schema cannot say.
void WindowLayer::parse_window(std::vector<int64_t> kernel, bool stride_defaults_to_kernel,
                               bool dilation, bool ceil) {
  auto k = ints("kernel_size", kernel);
  if (k.size() == 1) k.push_back(k[0]);
  if (k[0] <= 0 || k[1] <= 0) bad("attribute 'kernel_size' must be positive");  // a weight's dims
  auto s = ints("stride", stride_defaults_to_kernel ? k : std::vector<int64_t>{1, 1});
  if (s.size() == 1) s.push_back(s[0]);
  auto p = ints("padding", {0, 0, 0, 0});
  if (p.size() == 3) bad("attribute 'padding' takes 1, 2 or 4 values ([top, left, bottom, right])");
  if (p.size() == 1) p = {p[0], p[0], p[0], p[0]};
  if (p.size() == 2) p = {p[0], p[1], p[0], p[1]};
  std::vector<int64_t> d{1, 1};
  if (dilation) {
    d = ints("dilation", {1, 1});
    if (d.size() == 1) d.push_back(d[0]);
  }
  g_.kh = k[0];
  g_.kw = k[1];
  g_.sh = s[0];
  g_.sw = s[1];
  g_.pt = p[0];
  g_.pl = p[1];
  g_.pb = p[2];
  g_.pr = p[3];
  g_.dh = d[0];
  g_.dw = d[1];
  g_.ceil_mode = ceil && int1("ceil_mode") != 0;
}

Shape WindowLayer::window_out(const Shape& in, int64_t channels) const {
  if (in.rank != 4) bad("needs a (N, C, H, W) input, got " + in.str());
  int64_t oh = g_.out_h(in.h), ow = g_.out_w(in.w);
  if (oh <= 0 || ow <= 0)
    bad("window " + std::to_string(g_.kh) + "x" + std::to_string(g_.kw) +
        " does not fit the input " + in.str());
  return Shape::nchw(in.n, channels, oh, ow);
}

}  // namespace pydeconv
