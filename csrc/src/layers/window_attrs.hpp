// Shared parsing of kernel_size / stride / padding / dilation / ceil_mode for conv and pooling.
#pragma once
#include "layers/layer.hpp"

namespace pydeconv {

// A layer with a sliding window. `kernel` gives kernel_size when the attribute is absent
// ({0, 0} = required).
class WindowLayer : public Layer {
 public:
  using Layer::Layer;
  RfStep rf() const override {
    RfStep s;
    s.size_h = g_.dh * (g_.kh - 1) + 1;
    s.size_w = g_.dw * (g_.kw - 1) + 1;
    s.stride_h = g_.sh;
    s.stride_w = g_.sw;
    s.pad_h = g_.pt;
    s.pad_w = g_.pl;
    return s;
  }

 protected:
  void parse_window(std::vector<int64_t> kernel, bool stride_defaults_to_kernel, bool dilation,
                    bool ceil);
  // Output shape for an input; throws when the window does not fit.
  Shape window_out(const Shape& in, int64_t channels) const;
  Window2d g_;
};

}  // namespace pydeconv
