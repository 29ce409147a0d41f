// conv_transpose2d (torch's ConvTranspose2d). Forward: the data gradient of the conv2d with the
// same filters and geometry (from this layer's output to its input) + bias. Back (all rules): that
// conv2d itself, bias unused.
#include <mutex>

#include "layers.hpp"
#include "window_attrs.hpp"

namespace pydeconv {
namespace {

class ConvTranspose2d : public WindowLayer {
 public:
  using WindowLayer::WindowLayer;

  Shape shape(const std::vector<Shape>& in) override {
    const Tensor* w = param("weight");
    bias_ = param("bias");
    const Shape& ws = w->shape();
    if (ws.rank != 4) bad("parameter 'weight' must be (in, out/groups, kh, kw), got " + ws.str());
    parse_window({ws.h, ws.w}, false, true, false);
    if (g_.kh != ws.h || g_.kw != ws.w)
      bad("attribute 'kernel_size' disagrees with the weight shape " + ws.str());
    groups_ = int1("groups");
    if (in[0].rank != 4) bad("needs a (N, C, H, W) input, got " + in[0].str());
    if (ws.n != in[0].c)
      bad("parameter 'weight' " + ws.str() + " expects " + std::to_string(ws.n) +
          " input channels, the input has " + std::to_string(in[0].c));
    if (in[0].c % groups_)
      bad("groups=" + std::to_string(groups_) + " must divide the input channels (" +
          std::to_string(in[0].c) + ")");
    const int64_t oc = ws.c * groups_;
    if (bias_ && (bias_->shape().rank != 1 || bias_->shape().n != oc))
      bad("parameter 'bias' must have shape (" + std::to_string(oc) + ",)");
    auto op = ints("output_padding", {0, 0});
    if (op.size() == 1) op.push_back(op[0]);
    if ((op[0] >= g_.sh && op[0] >= g_.dh) || (op[1] >= g_.sw && op[1] >= g_.dw))
      bad("attribute 'output_padding' must be smaller than the stride or the dilation");
    const int64_t oh = (in[0].h - 1) * g_.sh - g_.pt - g_.pb + g_.dh * (g_.kh - 1) + op[0] + 1;
    const int64_t ow = (in[0].w - 1) * g_.sw - g_.pl - g_.pr + g_.dw * (g_.kw - 1) + op[1] + 1;
    if (oh <= 0 || ow <= 0)
      bad("the padding leaves no output for the input " + in[0].str() + " (output " +
          std::to_string(oh) + "x" + std::to_string(ow) + ")");
    weight_ = *w;
    packed_back_ = kernels::conv2d_pack_backward(weight_, g_, groups_);
    return Shape::nchw(in[0].n, oc, oh, ow);
  }

  // The input spread out by the stride, then a stride-1 window of the dilated kernel: output p
  // reads the inputs i with p - (d*(k-1) - pad) <= i*stride <= p + pad.
  RfStep rf() const override {
    RfStep s;
    s.size_h = g_.dh * (g_.kh - 1) + 1;
    s.size_w = g_.dw * (g_.kw - 1) + 1;
    s.pad_h = s.size_h - 1 - g_.pt;
    s.pad_w = s.size_w - 1 - g_.pl;
    s.up_h = g_.sh;
    s.up_w = g_.sw;
    return s;
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::conv_transpose2d_forward(ctx, *a.in[0], weight_, bias_ ? bias_->data() : nullptr, g_,
                                      groups_, *a.out, &packed_back_);
  }

  // All rules: gin += conv2d(gout, W) (the same filters as a convolution), bias unused.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    if (ctx.reference)
      return kernels::conv_transpose2d_backward(ctx, *a.gout, a.region, weight_, g_, groups_,
                                                *a.gin[0]);
    // Packed on first use, not at load: a model used only forward never pays the memory.
    std::call_once(packed_fwd_once_,
                   [&] { packed_fwd_ = kernels::conv2d_pack_forward(weight_, groups_); });
    kernels::conv_transpose2d_backward(ctx, *a.gout, a.region, weight_, g_, groups_, *a.gin[0],
                                       &packed_fwd_);
  }

 private:
  Tensor weight_;
  const Tensor* bias_ = nullptr;
  int64_t groups_ = 1;
  kernels::ConvPacked packed_back_;  // the forward's (conv2d_backward's), packed at load
  mutable std::once_flag packed_fwd_once_;
  mutable kernels::ConvPacked packed_fwd_;  // the backward's, set once by call_once
};

}  // namespace

std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s) {
  return std::make_unique<ConvTranspose2d>(s);
}

}  // namespace pydeconv
