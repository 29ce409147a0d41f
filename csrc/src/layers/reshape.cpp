// reshape: the same elements in the same order, another per-sample shape (C, H, W) given by the
// attribute `shape` (ONNX Reshape on rank-3/4 tensors: a detection head's (C, H, W) -> (C, 1,
// H*W)). A unit of the output may sit anywhere in the input's rows and columns, so its receptive
// field is the whole input.
#include <string>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Reshape : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    const std::vector<int64_t> s = ints("shape", {});  // required, 3 positive values (schema)
    Shape out = Shape::nchw(in[0].n, s[0], s[1], s[2]);
    if (out.sample() != in[0].sample())
      bad("attribute 'shape' [" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " +
          std::to_string(s[2]) + "] holds " + std::to_string(out.sample()) +
          " elements per sample, the input " + in[0].str() + " " + std::to_string(in[0].sample()));
    return out;
  }

  void forward(const Ctx&, ForwardArgs& a) const override {
    kernels::reshape_forward_ref(*a.in[0], *a.out);
  }

  // All rules: gin += gout, reshaped back.
  void backward(const Ctx&, BackwardArgs& a) const override {
    kernels::reshape_backward_ref(*a.gout, *a.gin[0]);
  }

  RfStep rf() const override { return global_rf(); }
};

}  // namespace

std::unique_ptr<Layer> make_reshape(const LayerSpec& s) { return std::make_unique<Reshape>(s); }

}  // namespace pydeconv
