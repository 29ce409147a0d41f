// lrn and batch_norm: both go back by their exact gradient at the forward point.
#include <cmath>
#include <vector>

#include "layers.hpp"

namespace pydeconv {
namespace {

class Lrn : public Layer {
 public:
  using Layer::Layer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({"size", "alpha", "beta", "bias"});
    check_params({});
    p_.size = int1("size", 5);
    p_.alpha = num1("alpha", 1e-4);
    p_.beta = num1("beta", 0.75);
    p_.bias = num1("bias", 1.0);
    if (p_.size <= 0) bad("attribute 'size' must be positive");
    if (p_.bias <= 0 || p_.alpha < 0) bad("attributes need bias > 0 and alpha >= 0");
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::lrn_forward(ctx, *a.in[0], p_, *a.out);
  }

  // All rules: the LRN Jacobian (transposed) at the forward input.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::lrn_backward(ctx, *a.in[0], *a.gout, a.region, p_, *a.gin[0], a.reps);
  }

  bool backward_reads_region_only() const override { return true; }

  Needs needs() const override { return {true, false, false, false}; }

 private:
  kernels::LrnParams p_;
};

class BatchNorm : public Layer {
 public:
  using Layer::Layer;

  Shape infer(const std::vector<Shape>& in) override {
    expect_inputs(in, 1, 1);
    check_attrs({"epsilon"});
    check_params({"scale", "bias", "mean", "var"});
    const double eps = num1("epsilon", 1e-5);
    if (eps < 0) bad("attribute 'epsilon' must be non-negative");
    const int64_t c = in[0].c;
    const Tensor* p[4];
    const char* names[4] = {"scale", "bias", "mean", "var"};
    for (int i = 0; i < 4; ++i) {
      p[i] = param(names[i], true);
      if (p[i]->shape().rank != 1 || p[i]->shape().n != c)
        bad(std::string("parameter '") + names[i] + "' must have shape (" + std::to_string(c) + ",)");
    }
    a_.resize(static_cast<size_t>(c));
    b_.resize(static_cast<size_t>(c));
    for (int64_t i = 0; i < c; ++i) {
      const double var = p[3]->data()[i];
      if (var + eps <= 0) bad("parameter 'var' + epsilon must be positive");
      const double a = p[0]->data()[i] / std::sqrt(var + eps);
      a_[i] = static_cast<float>(a);
      b_[i] = static_cast<float>(p[1]->data()[i] - p[2]->data()[i] * a);
    }
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    kernels::channel_affine_forward(ctx, *a.in[0], a_.data(), b_.data(), *a.out);
  }

  // All rules: gin += gout * scale / sqrt(var + eps) (the shift is a bias: unused going down).
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    kernels::channel_affine_backward(ctx, *a.gout, a.region, a_.data(), *a.gin[0]);
  }

  bool backward_reads_region_only() const override { return true; }

 private:
  std::vector<float> a_, b_;
};

}  // namespace

std::unique_ptr<Layer> make_lrn(const LayerSpec& s) { return std::make_unique<Lrn>(s); }
std::unique_ptr<Layer> make_batch_norm(const LayerSpec& s) { return std::make_unique<BatchNorm>(s); }

}  // namespace pydeconv
