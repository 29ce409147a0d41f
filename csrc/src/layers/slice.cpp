// slice: the indices [start, end) of the input along axis 1 (C, the default), 2 (H) or 3 (W) (a
// detection head's split of its last ONNX axis, which runs along W).
#include <string>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Slice : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    axis_ = static_cast<int>(int1("axis"));
    if (axis_ > 3)
      bad("attribute 'axis' is " + std::to_string(axis_) + ": must be 1 (C), 2 (H) or 3 (W)");
    if (axis_ != 1 && in[0].rank != 4)
      bad("attribute 'axis' " + std::to_string(axis_) + " needs a rank-4 input, got " +
          in[0].str());
    start_ = ints("start", {})[0];  // required: present (schema)
    const int64_t end = ints("end", {})[0];
    if (end <= start_)
      bad("attribute 'end' (" + std::to_string(end) + ") must be greater than 'start' (" +
          std::to_string(start_) + ")");
    Shape out = in[0];
    int64_t& along = axis_ == 1 ? out.c : axis_ == 2 ? out.h : out.w;
    const char* what = axis_ == 1 ? " channels " : axis_ == 2 ? " rows " : " columns ";
    if (end > along)
      bad("attribute 'end' (" + std::to_string(end) + ") is past the input's " +
          std::to_string(along) + what + in[0].str());
    along = end - start_;
    return out;
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    (void)ctx;
    kernels::slice_forward_ref(*a.in[0], axis_, start_, *a.out);
  }

  // All rules: gout goes into the sliced indices; the others get nothing.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    (void)ctx;
    kernels::slice_backward_ref(*a.gout, axis_, start_, *a.gin[0]);
  }

  // Along H or W an output position is not the input's same position: the regions go back whole.
  RfStep rf() const override { return axis_ == 1 ? RfStep{} : global_rf(); }

 private:
  int axis_ = 1;
  int64_t start_ = 0;
};

}  // namespace

std::unique_ptr<Layer> make_slice(const LayerSpec& s) { return std::make_unique<Slice>(s); }

}  // namespace pydeconv
