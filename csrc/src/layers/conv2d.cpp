// conv2d. Forward: cross-correlation + bias. Back (all rules): the transposed convolution with the
// same filters, bias unused.
#include <atomic>
#include <mutex>

#include "layers.hpp"
#include "window_attrs.hpp"

namespace pydeconv {
namespace {

class Conv2d : public WindowLayer {
 public:
  using WindowLayer::WindowLayer;

  Shape shape(const std::vector<Shape>& in) override {
    weight_ = param("weight");
    bias_ = param("bias");
    const Shape& ws = weight_->shape();
    if (ws.rank != 4) bad("parameter 'weight' must be (out, in/groups, kh, kw), got " + ws.str());
    parse_window({ws.h, ws.w}, false, true, false);
    if (g_.kh != ws.h || g_.kw != ws.w)
      bad("attribute 'kernel_size' disagrees with the weight shape " + ws.str());
    groups_ = int1("groups");
    if (in[0].rank != 4) bad("needs a (N, C, H, W) input, got " + in[0].str());
    if (in[0].c % groups_ || ws.n % groups_)
      bad("groups=" + std::to_string(groups_) + " must divide the input channels (" +
          std::to_string(in[0].c) + ") and output channels (" + std::to_string(ws.n) + ")");
    if (ws.c != in[0].c / groups_)
      bad("parameter 'weight' " + ws.str() + " expects " + std::to_string(ws.c * groups_) +
          " input channels, the input has " + std::to_string(in[0].c));
    if (bias_ && (bias_->shape().rank != 1 || bias_->shape().n != ws.n))
      bad("parameter 'bias' must have shape (" + std::to_string(ws.n) + ",)");
    packed_ = kernels::conv2d_pack_forward(*weight_, groups_);
    // Keep the weights once, packed: the plain layout is rebuilt when asked for (parameter(),
    // reference kernels, packing the transposed conv) and dropped again.
    weight_shape_ = ws;
    spec_.params["weight"] = Tensor(ws, std::shared_ptr<float>());
    weight_ = nullptr;
    caps_.backward_overwrites = kernels::conv2d_backward_overwrites(g_, weight_shape_.c);
    return window_out(in[0], ws.n);
  }

  Tensor parameter(const std::string& key) const override {
    if (key != "weight") return Layer::parameter(key);
    Tensor w(weight_shape_);
    const int64_t ocg = weight_shape_.n / groups_, krows = weight_shape_.sample();
    for (int64_t gi = 0; gi < groups_; ++gi)
      kernels::unpack_a(packed_.groups[gi], w.data() + gi * ocg * krows, krows);
    return w;
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    const float* bias = bias_ ? bias_->data() : nullptr;
    if (ctx.reference)
      return kernels::conv2d_forward(ctx, *a.in[0], parameter("weight"), bias, g_, groups_, *a.out,
                                     nullptr, a.relu.out, a.relu.mask);
    kernels::conv2d_forward(ctx, *a.in[0], Tensor(weight_shape_, std::shared_ptr<float>()), bias,
                            g_, groups_, *a.out, &packed_, a.relu.out, a.relu.mask);
  }

  void share_cache_budget(const std::shared_ptr<std::atomic<int64_t>>& bytes) override {
    kernels::conv2d_share_wino_budget(packed_, bytes);
  }
  int64_t cache_bytes() const override { return kernels::conv2d_wino_cached_bytes(packed_); }

  // All rules: gin += conv_transpose(gout, W).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    if (ctx.reference)
      return kernels::conv2d_backward(ctx, *a.gout, a.region, parameter("weight"), g_, groups_,
                                      *a.gin[0], nullptr, a.overwrite);
    // Winograd straight from the forward packing unless the regions are tiny (kernels/conv.cpp).
    // The choice depends on the call alone, never on whether an earlier call packed the direct
    // path: a choice that did gave a fresh process's first projections other bits (~1e-6) than
    // the same calls made later.
    if (kernels::conv2d_backward_winograd(ctx, *a.gout, a.region, g_, groups_, *a.gin[0], packed_,
                                          a.overwrite, a.choose_by))
      return;
    // Packed on first use, not at load: a model used only forward never pays the memory.
    std::call_once(packed_back_once_, [&] {
      packed_back_ = kernels::conv2d_pack_backward(parameter("weight"), g_, groups_);
    });
    kernels::conv2d_backward(ctx, *a.gout, a.region,
                             Tensor(weight_shape_, std::shared_ptr<float>()), g_, groups_,
                             *a.gin[0], &packed_back_, a.overwrite);
  }

 private:
  const Tensor* weight_ = nullptr;
  const Tensor* bias_ = nullptr;
  int64_t groups_ = 1;
  Shape weight_shape_;
  kernels::ConvPacked packed_;  // the weights as the forward GEMM reads them, packed at load
  mutable std::once_flag packed_back_once_;
  mutable kernels::ConvPacked packed_back_;  // the transposed conv's, set once by call_once
};

}  // namespace

std::unique_ptr<Layer> make_conv2d(const LayerSpec& s) { return std::make_unique<Conv2d>(s); }

}  // namespace pydeconv
