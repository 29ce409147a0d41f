// max_pool2d (records switches), avg_pool2d, global_avg_pool.
#include "layers.hpp"
#include "window_attrs.hpp"

namespace pydeconv {
namespace {

class MaxPool2d : public WindowLayer {
 public:
  using WindowLayer::WindowLayer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({"kernel_size", "stride", "padding", "dilation", "ceil_mode"});
    check_params({});
    if (!spec_.attrs.count("kernel_size")) bad("missing attribute 'kernel_size'");
    parse_window({0, 0}, true, true, true);
    // Every window must hold an input element, so padding never wins.
    if (g_.pt >= rf().size_h || g_.pb >= rf().size_h || g_.pl >= rf().size_w ||
        g_.pr >= rf().size_w)
      bad("padding must be smaller than the window");
    return window_out(in[0], in[0].c);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::max_pool2d_forward(ctx, *a.in[0], g_, *a.out, *a.switches);
  }

  // All rules: unpool, each value to its switch; overlapping windows' contributions sum.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::max_unpool2d(ctx, *a.gout, a.region, *a.switches, *a.gin[0], a.reps,
                          a.overwrite ? &g_ : nullptr);
  }

  bool backward_reads_region_only() const override { return true; }

  // Windows that tile the input (stride = size, no dilation: VGG's 2x2/2) are written whole.
  bool backward_overwrites() const override {
    return g_.kh == g_.sh && g_.kw == g_.sw && g_.dh == 1 && g_.dw == 1;
  }

  Needs needs() const override { return {false, false, false, true}; }
};

class AvgPool2d : public WindowLayer {
 public:
  using WindowLayer::WindowLayer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({"kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"});
    check_params({});
    if (!spec_.attrs.count("kernel_size")) bad("missing attribute 'kernel_size'");
    parse_window({0, 0}, true, false, true);
    include_pad_ = int1("count_include_pad", 0) != 0;
    if (g_.pt >= g_.kh || g_.pb >= g_.kh || g_.pl >= g_.kw || g_.pr >= g_.kw)
      bad("padding must be smaller than the window");
    return window_out(in[0], in[0].c);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::avg_pool2d_forward(ctx, *a.in[0], g_, include_pad_, *a.out);
  }

  // All rules: spread each value evenly over its window (the exact gradient).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::avg_pool2d_backward(ctx, *a.gout, g_, include_pad_, *a.gin[0]);
  }

 private:
  bool include_pad_ = false;
};

class GlobalAvgPool : public Layer {
 public:
  using Layer::Layer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({});
    check_params({});
    if (in[0].rank != 4) bad("needs a (N, C, H, W) input, got " + in[0].str());
    return Shape::nchw(in[0].n, in[0].c, 1, 1);
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    const Tensor& x = *a.in[0];
    const int64_t planes = x.shape().n * x.shape().c, hw = x.shape().plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
    for (int64_t p = 0; p < planes; ++p) {
      double acc = 0.0;
      for (int64_t i = 0; i < hw; ++i) acc += x.data()[p * hw + i];
      a.out->data()[p] = static_cast<float>(acc / double(hw));
    }
  }

  // All rules: spread each value evenly over the whole plane.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    Tensor& gin = *a.gin[0];
    const int64_t planes = gin.shape().n * gin.shape().c, hw = gin.shape().plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
    for (int64_t p = 0; p < planes; ++p) {
      const float share = a.gout->data()[p] / float(hw);
      for (int64_t i = 0; i < hw; ++i) gin.data()[p * hw + i] += share;
    }
  }

  RfStep rf() const override {
    RfStep s;
    s.global = true;
    return s;
  }
};

}  // namespace

std::unique_ptr<Layer> make_max_pool2d(const LayerSpec& s) { return std::make_unique<MaxPool2d>(s); }
std::unique_ptr<Layer> make_avg_pool2d(const LayerSpec& s) { return std::make_unique<AvgPool2d>(s); }
std::unique_ptr<Layer> make_global_avg_pool(const LayerSpec& s) {
  return std::make_unique<GlobalAvgPool>(s);
}

}  // namespace pydeconv
