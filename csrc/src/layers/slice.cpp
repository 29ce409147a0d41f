// slice: the channels [start, end) of the input (axis 1 only).
#include "layers.hpp"

namespace pydeconv {
namespace {

class Slice : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    start_ = ints("start", {})[0];  // required: present (schema)
    const int64_t end = ints("end", {})[0];
    if (end <= start_)
      bad("attribute 'end' (" + std::to_string(end) + ") must be greater than 'start' (" +
          std::to_string(start_) + ")");
    if (end > in[0].c)
      bad("attribute 'end' (" + std::to_string(end) + ") is past the input's " +
          std::to_string(in[0].c) + " channels " + in[0].str());
    Shape out = in[0];
    out.c = end - start_;
    return out;
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    (void)ctx;
    kernels::slice_forward_ref(*a.in[0], start_, *a.out);
  }

  // All rules: gout goes into the sliced channels; the others get nothing.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    (void)ctx;
    kernels::slice_backward_ref(*a.gout, start_, *a.gin[0]);
  }

 private:
  int64_t start_ = 0;
};

}  // namespace

std::unique_ptr<Layer> make_slice(const LayerSpec& s) { return std::make_unique<Slice>(s); }

}  // namespace pydeconv
