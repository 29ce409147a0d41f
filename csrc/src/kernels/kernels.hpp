// pydeconv (internal): the compute kernels. They know nothing of layers or graphs: plain tensors in
// and out, shapes already validated by the caller. Every backward kernel (`*_backward`,
// max_unpool2d) ACCUMULATES into its gradient output, unless told to overwrite it
// (conv2d_backward's `overwrite`, max_unpool2d's `tiling`). Those that read forward data (inputs,
// outputs, switches) take a gradient batch B = N * reps: gradient sample b belongs to forward
// sample b / reps (several start signals for one image are projected in one pass).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/gemm.hpp"
#include "pydeconv/ctx.hpp"
#include "pydeconv/tensor.hpp"

namespace pydeconv {

// A rectangle [y0, y1) x [x0, x1) of a feature map that may hold non-zero values.
struct Region {
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  bool empty() const { return y1 <= y0 || x1 <= x0; }
  static Region full(const Shape& s) { return {0, s.h, 0, s.w}; }
};
// One region per sample of a gradient batch.
using Regions = std::vector<Region>;

// Geometry shared by conv2d and the pooling layers.
struct Window2d {
  int64_t kh = 1, kw = 1;
  int64_t sh = 1, sw = 1;
  int64_t pt = 0, pl = 0, pb = 0, pr = 0;  // padding top, left, bottom, right
  int64_t dh = 1, dw = 1;
  bool ceil_mode = false;
  int64_t out_h(int64_t h) const { return out_size(h, kh, sh, pt, pb, dh); }
  int64_t out_w(int64_t w) const { return out_size(w, kw, sw, pl, pr, dw); }
  // floor/ceil((in + pads - dil*(k-1) - 1) / s) + 1; with ceil_mode a window starting in the
  // end padding is dropped (PyTorch/ONNX rule). Returns <= 0 when the window does not fit.
  int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1, int64_t d) const;
};

namespace kernels {

// conv2d: in (N, C, H, W), weight (OC, C/groups, KH, KW), bias (OC) or null, out (N, OC, OH, OW).
// The fast kernels run on weights packed once for the GEMM (a layer packs them at load; without
// `packed` they are packed per call). Packs are immutable and may serve many threads at once.
struct WinoCache;  // kernels/winograd.hpp
struct ConvPacked {
  std::vector<PackedA> groups;  // one packed matrix per group
  // Winograd-transformed filters kept across forward calls, when enabled
  // (conv2d_share_wino_budget); null otherwise.
  std::shared_ptr<WinoCache> wino;
  // W^T for the direct kernel of few-input-channel convs (kernels/direct_conv.hpp), else empty.
  std::vector<float> direct;
  // The plain weights of a depthwise conv the depthwise kernels take (depthwise_weights_fit),
  // else empty.
  std::vector<float> depthwise;
};
// Per group W_g as (OC/groups) x (C/groups * KH * KW): the forward GEMM's A.
ConvPacked conv2d_pack_forward(const Tensor& weight, int64_t groups);
// The transposed convolution's A, per group. Stride 1: the filters flipped in space with in/out
// channels swapped, (C/groups) x (OC/groups * KH * KW): the transposed conv is then a forward
// conv of gout. Strided: W_g^T, (C/groups * KH * KW) x (OC/groups), for GEMM + col2im.
ConvPacked conv2d_pack_backward(const Tensor& weight, const Window2d& g, int64_t groups);

// Lets the forward conv keep its Winograd-transformed filters across calls where transforming
// them costs a large share of each call (small maps: 13x13 or 14x14 at 256+ channels), drawing
// their memory from `budget_bytes`, which the layers of a net share (net.cpp gives it a quarter
// of the net's parameter bytes). The first call that qualifies reserves the bytes and fills the
// cache; a refused reservation is final. Null: never cache.
void conv2d_share_wino_budget(ConvPacked& p, std::shared_ptr<std::atomic<int64_t>> budget_bytes);
// Bytes of transformed filters `p` keeps (0 when none).
int64_t conv2d_wino_cached_bytes(const ConvPacked& p);

// With relu_out (may be `out` itself) also relu(out) there, and [out > 0] in relu_mask when given:
// a following ReLU fused into the conv's output pass (its own pass in the other cases).
void conv2d_forward(const Ctx& ctx, const Tensor& in, const Tensor& weight, const float* bias,
                    const Window2d& g, int64_t groups, Tensor& out,
                    const ConvPacked* packed = nullptr, Tensor* relu_out = nullptr,
                    TensorT<uint8_t>* relu_mask = nullptr);
// The transposed convolution (the adjoint of conv2d without bias): gin += W^T * gout.
// Only the gout regions `r` (one per sample) may be non-zero; the work is limited to them, and
// the region pixels of every sample share one GEMM (many small projections batch well).
// With `overwrite` (conv2d_backward_overwrites(g, C/groups) must hold), gin = W^T * gout over
// the input rectangle each sample's region reaches, whatever gin held there.
void conv2d_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const Tensor& weight,
                     const Window2d& g, int64_t groups, Tensor& gin,
                     const ConvPacked* packed = nullptr, bool overwrite = false);
// Whether conv2d_backward (and conv2d_backward_winograd) can overwrite for this geometry and
// C/groups input channels per group: stride 1 and a group of 6+ channels (the flipped-kernel
// path; the strided and few-channel paths scatter-add through col2im).
bool conv2d_backward_overwrites(const Window2d& g, int64_t cg);
// Winograd F(2x2, 3x3) and F(4x4, 3x3) for 3x3 stride-1 convolutions (forward and the
// projection's transposed conv) where one is cheaper than the direct GEMM: 2.25x / 4x fewer
// multiply-adds, results equal to the direct conv up to float rounding. Process-wide mode:
//   0  off: every convolution runs as a direct GEMM;
//   1  the default: per call, the cheapest of F(2x2), F(4x4) and the direct GEMM (the
//      projection's transposed convs take F(4x4) on large regions only);
//   2 / 4  F(2x2) / F(4x4) wherever it applies, whatever it costs (for tests and benchmarks).
// The mode is a setting (settings.hpp: set_winograd_mode, PYDECONV_WINOGRAD=0 / 2 / 4).

// The transposed conv by Winograd (F(2x2, 3x3); F(4x4, 3x3) on large regions) from the forward
// packing, when the geometry allows it (3x3, stride 1, no dilation or groups, enough channels)
// and it costs less than 3x the direct GEMM for these regions by the cost model; returns false (and
// does nothing) otherwise, or with reference kernels. The choice is a function of the arguments
// alone (never of earlier calls), so a call's bits are too. `choose_by`: the regions the choice is
// made for, when they are not `r` itself: those of a whole projection that runs in chunks
// (Net::project_channels under max_memory), so every chunk chooses as the whole batch would and
// gets its bits.
bool conv2d_backward_winograd(const Ctx& ctx, const Tensor& gout, const Regions& r,
                              const Window2d& g, int64_t groups, Tensor& gin,
                              const ConvPacked& forward, bool overwrite = false,
                              const Regions* choose_by = nullptr);
void conv2d_forward_ref(const Tensor& in, const Tensor& weight, const float* bias,
                        const Window2d& g, int64_t groups, Tensor& out);
void conv2d_backward_ref(const Tensor& gout, const Tensor& weight, const Window2d& g,
                         int64_t groups, Tensor& gin, int64_t reps);

// max_pool2d with switches: index ih * W + iw into the input plane, ties to the first in row-major
// window order, padding never wins. Unpooling scatters (sums) gout through the switches.
void max_pool2d_forward(const Ctx& ctx, const Tensor& in, const Window2d& g, Tensor& out,
                        IndexTensor& switches);
// With `tiling` (the pool's window, whose stride equals its size: windows never overlap), gin is
// overwritten over every region pixel's whole window (0 but at the switch) instead of added to.
void max_unpool2d(const Ctx& ctx, const Tensor& gout, const Regions& r, const IndexTensor& switches,
                  Tensor& gin, int64_t reps, const Window2d* tiling = nullptr);
void max_unpool2d_ref(const Tensor& gout, const IndexTensor& switches, Tensor& gin, int64_t reps);
void max_pool2d_forward_ref(const Tensor& in, const Window2d& g, Tensor& out,
                            IndexTensor& switches);

void avg_pool2d_forward(const Ctx& ctx, const Tensor& in, const Window2d& g, bool count_include_pad,
                        Tensor& out);
void avg_pool2d_backward(const Ctx& ctx, const Tensor& gout, const Window2d& g,
                         bool count_include_pad, Tensor& gin);

// linear: in (N, I) (any rank, flattened), weight (O, I), bias (O) or null, out (N, O).
void linear_forward(const Ctx& ctx, const Tensor& in, const Tensor& weight, const float* bias,
                    Tensor& out);
// choose_batch: the batch the kernel is chosen for when larger than gout's (a projection run in
// chunks chooses as its whole batch would, for the same bits).
void linear_backward(const Ctx& ctx, const Tensor& gout, const Tensor& weight, Tensor& gin,
                     int64_t choose_batch = 0);

// Cross-channel LRN: y_c = x_c / (bias + alpha/size * sum_j x_j^2)^beta.
struct LrnParams {
  int64_t size = 5;
  double alpha = 1e-4, beta = 0.75, bias = 1.0;
};
void lrn_forward(const Ctx& ctx, const Tensor& in, const LrnParams& p, Tensor& out);
// gin += J(x)^T gout, the LRN Jacobian at the forward input x.
void lrn_backward(const Ctx& ctx, const Tensor& x, const Tensor& gout, const Regions& r,
                  const LrnParams& p, Tensor& gin, int64_t reps);
// The naive double-precision definitions the fast LRN kernels are tested against (whole tensors,
// no regions); ctx.reference selects them.
void lrn_forward_ref(const Tensor& in, const LrnParams& p, Tensor& out);
void lrn_backward_ref(const Tensor& x, const Tensor& gout, const LrnParams& p, Tensor& gin,
                      int64_t reps);

// y = relu(x) over n elements, and mask = [x > 0] when mask is not null; y may be x itself.
void relu_forward(const Ctx& ctx, const float* x, float* y, uint8_t* mask, int64_t n);
// The ReLU's backward over each sample's region: gin += g, zeroed where `rectify` and g <= 0, and
// where `gate` and the forward input was not positive (read from `mask` when not null, else from
// x, batch N). Deconvnet rectifies, backprop gates, guided does both. In place (gin is gout's own
// buffer) gin = that instead.
void relu_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const float* x,
                   const uint8_t* mask, bool rectify, bool gate, Tensor& gin, int64_t reps);
void relu_forward_ref(const float* x, float* y, uint8_t* mask, int64_t n);
void relu_backward_ref(const Tensor& gout, const float* x, const uint8_t* mask, bool rectify,
                       bool gate, Tensor& gin, int64_t reps);

// Per-channel affine y = x * a[c] + b[c] (inference batch norm); backward gin += gout * a[c].
void channel_affine_forward(const Ctx& ctx, const Tensor& in, const float* a, const float* b,
                            Tensor& out);
void channel_affine_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const float* a,
                             Tensor& gin);
void channel_affine_forward_ref(const Tensor& in, const float* a, const float* b, Tensor& out);
void channel_affine_backward_ref(const Tensor& gout, const float* a, Tensor& gin);

// Softmax over channels (per sample and position); backward through its Jacobian at output y.
void softmax_forward(const Ctx& ctx, const Tensor& in, Tensor& out);
void softmax_backward(const Ctx& ctx, const Tensor& y, const Tensor& gout, Tensor& gin,
                      int64_t reps);
void softmax_forward_ref(const Tensor& in, Tensor& out);
void softmax_backward_ref(const Tensor& y, const Tensor& gout, Tensor& gin, int64_t reps);

// Element-wise sum of 2+ same-shape inputs; backward hands the signal (each sample's region) to
// every input. A tensor listed twice in gin receives it twice.
void add_forward(const Ctx& ctx, const std::vector<const Tensor*>& in, Tensor& out);
void add_backward(const Ctx& ctx, const Tensor& gout, const Regions& r,
                  const std::vector<Tensor*>& gin);
void add_forward_ref(const std::vector<const Tensor*>& in, Tensor& out);
void add_backward_ref(const Tensor& gout, const std::vector<Tensor*>& gin);

// Concatenation over channels; backward gives each input its own channels (each sample's region).
void concat_forward(const Ctx& ctx, const std::vector<const Tensor*>& in, Tensor& out);
void concat_backward(const Ctx& ctx, const Tensor& gout, const Regions& r,
                     const std::vector<Tensor*>& gin);
void concat_forward_ref(const std::vector<const Tensor*>& in, Tensor& out);
void concat_backward_ref(const Tensor& gout, const std::vector<Tensor*>& gin);

// The naive average pooling the fast kernels are tested against (the layer selects them under
// ctx.reference).
void avg_pool2d_forward_ref(const Tensor& in, const Window2d& g, bool count_include_pad,
                            Tensor& out);
void avg_pool2d_backward_ref(const Tensor& gout, const Window2d& g, bool count_include_pad,
                             Tensor& gin);
// Each plane to its mean, out (N, C, 1, 1); backward spreads each value evenly over its plane.
void global_avg_pool_forward(const Ctx& ctx, const Tensor& in, Tensor& out);
void global_avg_pool_backward(const Ctx& ctx, const Tensor& gout, Tensor& gin);
void global_avg_pool_forward_ref(const Tensor& in, Tensor& out);
void global_avg_pool_backward_ref(const Tensor& gout, Tensor& gin);

// mul: the element-wise product of a and b with broadcasting (each of their C, H, W equals out's
// or is 1). Backward, the product rule: ga += gout * b and gb += gout * a, each summed over the
// dims its input was broadcast along; a and b are the forward inputs (batch N), gout has batch
// B = N * reps; ga or gb may be null (not wanted) or the same tensor (mul(x, x)).
void mul_forward(const Ctx& ctx, const Tensor& a, const Tensor& b, Tensor& out);
void mul_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const Tensor& a,
                  const Tensor& b, Tensor* ga, Tensor* gb, int64_t reps);
void mul_forward_ref(const Tensor& a, const Tensor& b, Tensor& out);
void mul_backward_ref(const Tensor& gout, const Tensor& a, const Tensor& b, Tensor* ga, Tensor* gb,
                      int64_t reps);

// upsample by integer factors: nearest out[y, x] = in[y / sh, x / sw]; bilinear as PyTorch's
// interpolate(scale_factor=(sh, sw), mode="bilinear", align_corners). Backward: the transpose.
struct UpsampleGeom {
  int64_t sh = 1, sw = 1;
  bool bilinear = false, align_corners = false;
};
void upsample_forward(const Ctx& ctx, const Tensor& in, const UpsampleGeom& u, Tensor& out);
void upsample_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const UpsampleGeom& u,
                       Tensor& gin);
void upsample_forward_ref(const Tensor& in, const UpsampleGeom& u, Tensor& out);
void upsample_backward_ref(const Tensor& gout, const UpsampleGeom& u, Tensor& gin);

// slice along axis 1 (C), 2 (H) or 3 (W): out's indices along it are in's [start, start + size);
// backward adds them back there.
void slice_forward_ref(const Tensor& in, int axis, int64_t start, Tensor& out);
void slice_backward_ref(const Tensor& gout, int axis, int64_t start, Tensor& gin);

// pad: constant (value) or reflect (PyTorch's F.pad mode="reflect": the edge is not repeated;
// each padding below the input's size) padding; backward crops (reflect: folds the mirrored parts
// back onto the pixels they copy).
struct Pad2d {
  int64_t t = 0, l = 0, b = 0, r = 0;
  float value = 0.f;
  bool reflect = false;
};
void pad_forward_ref(const Tensor& in, const Pad2d& p, Tensor& out);
void pad_backward_ref(const Tensor& gout, const Pad2d& p, Tensor& gin);

// channel_shuffle (ShuffleNet): out channel k * groups + j = in channel j * (C / groups) + k;
// backward the inverse permutation.
void channel_shuffle_forward_ref(const Tensor& in, int64_t groups, Tensor& out);
void channel_shuffle_backward_ref(const Tensor& gout, int64_t groups, Tensor& gin);
// Layout kinds of a detection head's decode (kernels/ref/layout_ref.cpp; reference kernels only).
// reshape: the same elements in the same order, another per-sample shape; backward adds them back.
void reshape_forward_ref(const Tensor& in, Tensor& out);
void reshape_backward_ref(const Tensor& gout, Tensor& gin);
// transpose: a permutation of the per-sample axes (C, H, W): out axis k is in axis perm[k];
// backward the inverse permutation.
void transpose_forward_ref(const Tensor& in, const int64_t* perm, Tensor& out);
void transpose_backward_ref(const Tensor& gout, const int64_t* perm, Tensor& gin);
// concat along axis 2 (H) or 3 (W); backward gives each input its own rows or columns.
void concat_axis_forward_ref(const std::vector<const Tensor*>& in, int axis, Tensor& out);
void concat_axis_backward_ref(const Tensor& gout, int axis, const std::vector<Tensor*>& gin);
// add with weights: out = sum_k w[k] * in[k] (Sub of two tensors: w = [1, -1]); gin[k] += w[k] *
// gout.
void add_weighted_forward_ref(const std::vector<const Tensor*>& in, const std::vector<float>& w,
                              Tensor& out);
void add_weighted_backward_ref(const Tensor& gout, const std::vector<float>& w,
                               const std::vector<Tensor*>& gin);
// affine by constant tensors: out = in * a[i] + b[i], a and b one value per element of a sample
// (broadcast out by the layer); backward gin += gout * a[i].
void broadcast_affine_forward_ref(const Tensor& in, const float* a, const float* b, Tensor& out);
void broadcast_affine_backward_ref(const Tensor& gout, const float* a, Tensor& gin);

// Element-wise activations (the layers in layers/activation.hpp): y = f(x) over whole tensors;
// the backward goes over each sample's region of gout, x being the forward input (batch N).
enum class Act {
  LeakyRelu,    // x > 0 ? x : alpha*x (prelu: alpha = slope[c])
  Clip,         // min(max(x, lo), hi)
  Sigmoid,      // 1/(1+e^-x)
  Tanh,         // tanh x
  Silu,         // x*sigmoid(x)
  HardSigmoid,  // max(0, min(1, alpha*x+beta))
  HardSwish,    // x*max(0, min(1, x/6+1/2))
  Mish,         // x*tanh(softplus(x))
  Elu,          // x > 0 ? x : alpha*(e^x-1)
  Gelu,         // 0.5x(1+erf(x/sqrt2))
  GeluTanh,     // 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)))
};
struct ActParams {
  Act op = Act::Sigmoid;
  float alpha = 0.f, beta = 0.f;  // leaky_relu, elu: alpha; hardsigmoid: alpha, beta
  float lo = 0.f, hi = 0.f;       // clip
  const float* slope = nullptr;   // prelu: alpha per channel (C values)
};
// How the signal goes down: the gradient g*f'(x) (every rule at a non-rectifying layer, backprop
// at a rectifying one), relu(g) (deconvnet at a rectifying layer: x unused) or relu(g)*f'(x)
// (guided at a rectifying layer). f'(0) of the piecewise kinds is the x <= 0 branch's.
enum class ActDown { Gradient, Rectify, Guided };
void activation_forward(const Ctx& ctx, const Tensor& in, const ActParams& p, Tensor& out);
// gin += down(g, x) over each sample's region; in place (gin is gout's own buffer) gin = that.
void activation_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const Tensor& x,
                         const ActParams& p, ActDown down, Tensor& gin, int64_t reps);
void activation_forward_ref(const Tensor& in, const ActParams& p, Tensor& out);
void activation_backward_ref(const Tensor& gout, const Tensor& x, const ActParams& p, ActDown down,
                             Tensor& gin, int64_t reps);

// conv_transpose2d: in (N, C_in, H, W), weight (C_in, C_out/groups, KH, KW), bias (C_out) or null,
// out (N, C_out, OH, OW). `g` holds the layer's own kernel, stride, dilation and padding: the
// transposed conv is the adjoint of the conv2d of geometry g from out to in, weight as its
// (OC, C/groups, KH, KW) = (C_in, C_out/groups, KH, KW); output padding only sizes `out` (the
// kernels read g's top/left padding, never its bottom/right). The forward overwrites `out`; it
// runs conv2d_backward's GEMM paths on `packed_back` (conv2d_pack_backward(weight, g, groups))
// when given.
void conv_transpose2d_forward(const Ctx& ctx, const Tensor& in, const Tensor& weight,
                              const float* bias, const Window2d& g, int64_t groups, Tensor& out,
                              const ConvPacked* packed_back = nullptr);
// gin += conv2d(gout) with the same filters (the conv of geometry g): only each sample's gout
// region is read and only the gin rectangle it reaches is written, as one forward-conv GEMM over
// all samples' rectangles, on `packed_fwd` (conv2d_pack_forward(weight, groups)) when given.
void conv_transpose2d_backward(const Ctx& ctx, const Tensor& gout, const Regions& r,
                               const Tensor& weight, const Window2d& g, int64_t groups, Tensor& gin,
                               const ConvPacked* packed_fwd = nullptr);
// The gin rectangle a transposed conv's gout region reaches (empty when none).
Region conv_transpose2d_reach(const Region& r, const Window2d& g, const Shape& in);
void conv_transpose2d_forward_ref(const Tensor& in, const Tensor& weight, const float* bias,
                                  const Window2d& g, int64_t groups, Tensor& out);
void conv_transpose2d_backward_ref(const Tensor& gout, const Tensor& weight, const Window2d& g,
                                   int64_t groups, Tensor& gin);

// layer_norm over channels at each position (ConvNeXt's channels-first LayerNorm):
// y = (x - mean_c x) / sqrt(var_c x + eps) * scale[c] + bias[c] (biased variance; bias may be
// null). The backward is its Jacobian at the forward input x (batch N), over each sample's region:
// gin += rstd * (s - mean_c s - xhat * mean_c(s * xhat)), s = gout * scale, xhat the normalised x.
void layer_norm_forward(const Ctx& ctx, const Tensor& in, const float* scale, const float* bias,
                        double eps, Tensor& out);
void layer_norm_backward(const Ctx& ctx, const Tensor& x, const Tensor& gout, const Regions& r,
                         const float* scale, double eps, Tensor& gin, int64_t reps);
void layer_norm_forward_ref(const Tensor& in, const float* scale, const float* bias, double eps,
                            Tensor& out);
void layer_norm_backward_ref(const Tensor& x, const Tensor& gout, const float* scale, double eps,
                             Tensor& gin, int64_t reps);

// Depthwise convolution (MobileNet): groups == C == OC, 3x3 or 5x5 filters, stride 1 or 2 (either
// axis), no dilation. Direct per-plane kernels, far cheaper than a GEMM of one row per group.
// conv2d_pack_forward / conv2d_pack_backward keep the weights for them (ConvPacked::depthwise)
// when the weight shape fits; conv2d_forward / conv2d_backward take them when the geometry does.
bool depthwise_weights_fit(const Shape& weight, int64_t groups);
bool depthwise_fits(const Shape& weight, const Window2d& g, int64_t groups);
// False under PYDECONV_DEPTHWISE=0 (read at each call): the GEMM paths then run depthwise convs
// too (bench/depthwise.py's baseline).
bool depthwise_enabled();
// out = conv(in) + bias, with the fused ReLU as in conv2d_forward; w: (C, KH*KW) floats.
void depthwise_forward(const Ctx& ctx, const Tensor& in, const float* w, const float* bias,
                       const Window2d& g, Tensor& out, Tensor* relu_out,
                       TensorT<uint8_t>* relu_mask);
// gin += the transposed conv of gout, reading gout only inside each sample's region.
void depthwise_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const float* w,
                        const Window2d& g, Tensor& gin);

}  // namespace kernels
}  // namespace pydeconv
