// transpose: a permutation of the per-sample axes (C, H, W) (ONNX Transpose of a rank-4 tensor that
// keeps the batch first: YOLOv8's DFL (0, 2, 1, 3)). Output axis k is input axis perm[k]. Rows,
// columns and channels trade places, so an output unit's receptive field is the whole input.
#include <algorithm>
#include <string>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Transpose : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    const std::vector<int64_t> p = ints("perm", {});  // required, 3 non-negative values (schema)
    std::vector<int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    if (sorted != std::vector<int64_t>{0, 1, 2})
      bad("attribute 'perm' [" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ", " +
          std::to_string(p[2]) +
          "] is not a permutation of the per-sample axes [0, 1, 2] (C, H, W)");
    if (in[0].rank != 4) bad("expects an (N, C, H, W) input, got " + in[0].str());
    std::copy(p.begin(), p.end(), perm_);
    const int64_t d[3] = {in[0].c, in[0].h, in[0].w};
    return Shape::nchw(in[0].n, d[p[0]], d[p[1]], d[p[2]]);
  }

  void forward(const Ctx&, ForwardArgs& a) const override {
    kernels::transpose_forward_ref(*a.in[0], perm_, *a.out);
  }

  // All rules: gin += gout through the inverse permutation.
  void backward(const Ctx&, BackwardArgs& a) const override {
    kernels::transpose_backward_ref(*a.gout, perm_, *a.gin[0]);
  }

  RfStep rf() const override { return global_rf(); }

 private:
  int64_t perm_[3] = {0, 1, 2};
};

}  // namespace

std::unique_ptr<Layer> make_transpose(const LayerSpec& s) { return std::make_unique<Transpose>(s); }

}  // namespace pydeconv
