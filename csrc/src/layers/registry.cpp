// The one table of layer kinds. A row declares, as data: the kind's name and factory (its file,
// named after it), its schema (attributes, parameters, inputs: checked by Layer::infer before the
// kind's shape rule), what the executor may do with it (Caps), what its backward needs kept, how
// it sends the signal back down, and its reference kernels. tests/test_registry.py walks it.
#include <cstdint>
#include <utility>

#include "layers.hpp"

namespace pydeconv {
namespace {

// Capabilities and kept tensors by name, so that each row reads as a list.
enum : unsigned {
  kForwardInPlace = 1u << 0,
  kFusesRelu = 1u << 1,
  kFusableRelu = 1u << 2,
  kBackwardInPlace = 1u << 3,
  kRegionOnly = 1u << 4,
  kOverwrites = 1u << 5,
  kNeedsInput = 1u << 8,
  kNeedsOutput = 1u << 9,
  kNeedsMask = 1u << 10,
  kNeedsSwitches = 1u << 11,
};

Caps caps(unsigned f) {
  Caps c;
  c.forward_in_place = f & kForwardInPlace;
  c.fuses_relu = f & kFusesRelu;
  c.fusable_relu = f & kFusableRelu;
  c.backward_in_place = f & kBackwardInPlace;
  c.backward_region_only = f & kRegionOnly;
  c.backward_overwrites = f & kOverwrites;
  return c;
}

Needs needs(unsigned f) {
  Needs n;
  n.input = f & kNeedsInput;
  n.output = f & kNeedsOutput;
  n.mask = f & kNeedsMask;
  n.switches = f & kNeedsSwitches;
  return n;
}

// A kind whose backward is its exact gradient under every rule: `rule` is its text for all three.
LayerKind row(const char* name, std::unique_ptr<Layer> (*make)(const LayerSpec&), Schema schema,
              unsigned flags, const char* rule, const char* reference) {
  return {name, make,      std::move(schema),  caps(flags), needs(flags),
          rule, reference, {rule, rule, rule}, false};
}

// A rectifying (ReLU-like) kind: the rules differ. `rule` is the one line Net::info() reports;
// deconvnet, guided and backprop how the signal goes down under each (backprop: the gradient).
LayerKind rectifier(const char* name, std::unique_ptr<Layer> (*make)(const LayerSpec&),
                    Schema schema, unsigned flags, const char* rule, const char* deconvnet,
                    const char* guided, const char* backprop, const char* reference) {
  return {name,         make, std::move(schema), caps(flags),
          needs(flags), rule, reference,         {deconvnet, guided, backprop},
          true};
}

// Attributes shared by the windowed kinds.
AttrSchema kernel_size(bool required, const char* note) {
  return {"kernel_size", AttrType::Int, 1, 2, {}, Range::Positive, required, note};
}
AttrSchema stride(std::vector<double> dflt, const char* note) {
  return {"stride", AttrType::Int, 1, 2, std::move(dflt), Range::Positive, false, note};
}
const AttrSchema kPadding{
    "padding", AttrType::Int,      1,     4,
    {0},       Range::NonNegative, false, "[top, left, bottom, right]; 1 or 2 values repeat"};
const AttrSchema kDilation{"dilation", AttrType::Int, 1, 2, {1}, Range::Positive};
const AttrSchema kCeilMode{"ceil_mode", AttrType::Bool, 1, 1, {0}};

constexpr int kAny = 0;  // max_inputs: no limit

// What every activation row declares (registry rows at the end of the table).
constexpr unsigned kActivation = kBackwardInPlace | kRegionOnly | kNeedsInput;
constexpr const char* kActivationRef = "activation_forward_ref, activation_backward_ref";

}  // namespace

const std::vector<LayerKind>& layer_kinds() {
  static const std::vector<LayerKind> kinds = {
      row("conv2d", make_conv2d,
          {{kernel_size(false, "the weight's (kh, kw)"),
            stride({1}, ""),
            kPadding,
            kDilation,
            {"groups", AttrType::Int, 1, 1, {1}, Range::Positive}},
           {{"weight", true}, {"bias", false}}},
          kFusesRelu | kRegionOnly | kOverwrites,
          "transposed convolution with the same filters; bias unused",
          "conv2d_forward_ref, conv2d_backward_ref"),
      rectifier("relu", make_relu, {},
                kForwardInPlace | kFusableRelu | kBackwardInPlace | kRegionOnly | kNeedsMask,
                "deconvnet relu(g); guided relu(g)*[x>0]; backprop g*[x>0]", "relu(g)",
                "relu(g)*[x>0]", "g*[x>0]", "relu_forward_ref, relu_backward_ref"),
      row("max_pool2d", make_max_pool2d,
          {{kernel_size(true, ""), stride({}, "kernel_size"), kPadding, kDilation, kCeilMode}, {}},
          kRegionOnly | kOverwrites | kNeedsSwitches,
          "unpool through the switches; overlapping windows sum",
          "max_pool2d_forward_ref, max_unpool2d_ref"),
      row("avg_pool2d", make_avg_pool2d,
          {{kernel_size(true, ""),
            stride({}, "kernel_size"),
            kPadding,
            kCeilMode,
            {"count_include_pad", AttrType::Bool, 1, 1, {0}}},
           {}},
          0, "spread evenly over each window", "avg_pool2d_forward_ref, avg_pool2d_backward_ref"),
      row("global_avg_pool", make_global_avg_pool, {}, 0, "spread evenly over the plane",
          "global_avg_pool_forward_ref, global_avg_pool_backward_ref"),
      row("lrn", make_lrn,
          {{{"size", AttrType::Int, 1, 1, {5}, Range::Positive},
            {"alpha", AttrType::Number, 1, 1, {1e-4}, Range::NonNegative},
            {"beta", AttrType::Number, 1, 1, {0.75}},
            {"bias", AttrType::Number, 1, 1, {1.0}, Range::Positive}},
           {}},
          kRegionOnly | kNeedsInput, "LRN Jacobian at the forward input",
          "lrn_forward_ref, lrn_backward_ref"),
      row("batch_norm", make_batch_norm,
          {{{"epsilon", AttrType::Number, 1, 1, {1e-5}, Range::NonNegative}},
           {{"scale", true}, {"bias", true}, {"mean", true}, {"var", true}}},
          kRegionOnly, "multiply by scale/sqrt(var+eps); shift unused",
          "channel_affine_forward_ref, channel_affine_backward_ref"),
      row("linear", make_linear, {{}, {{"weight", true}, {"bias", false}}}, 0,
          "multiply by W^T; bias unused", "sgemm_ref"),
      row("flatten", make_flatten, {}, 0, "reshape back", "copy"),
      row("dropout", make_dropout,
          {{{"ratio", AttrType::Ignored, 0, 0, {}, Range::Any, false, "unused at inference"}}, {}},
          0, "identity", "copy"),
      row("softmax", make_softmax, {}, kNeedsOutput, "softmax Jacobian at the forward output",
          "softmax_forward_ref, softmax_backward_ref"),
      row("add", make_add,
          {{{"weights", AttrType::Number, 1, 1024, {}, Range::Any, false, "all 1; one per input"}},
           {},
           2,
           kAny},
          kRegionOnly, "copy to every input (times its weight)",
          "add_forward_ref, add_backward_ref, add_weighted_forward_ref, "
          "add_weighted_backward_ref"),
      row("concat", make_concat,
          {{{"axis", AttrType::Int, 1, 1, {1}, Range::Positive, false, "1 (C), 2 (H) or 3 (W)"}},
           {},
           2,
           kAny},
          kRegionOnly, "split by channels (rows, columns: axis 2, 3)",
          "concat_forward_ref, concat_backward_ref, concat_axis_forward_ref, "
          "concat_axis_backward_ref"),
      row("mul", make_mul, {{}, {}, 2, 2}, kRegionOnly | kNeedsInput,
          "product rule: each input gets g times the other input, summed over its broadcast dims",
          "mul_forward_ref, mul_backward_ref"),
      row("affine", make_affine, {{}, {{"scale", false}, {"bias", false}}},
          kForwardInPlace | kRegionOnly, "multiply by scale (broadcast); bias unused",
          "channel_affine_forward_ref, channel_affine_backward_ref, "
          "broadcast_affine_forward_ref, broadcast_affine_backward_ref"),
      row("upsample", make_upsample,
          {{{"scale", AttrType::Int, 1, 2, {}, Range::Positive, true, "[sh, sw]; 1 value repeats"},
            {"bilinear", AttrType::Bool, 1, 1, {0}},
            {"align_corners", AttrType::Bool, 1, 1, {0}}},
           {}},
          kRegionOnly, "the exact transpose (each input sums the outputs it feeds, weighted)",
          "upsample_forward_ref, upsample_backward_ref"),
      row("slice", make_slice,
          {{{"axis", AttrType::Int, 1, 1, {1}, Range::Positive, false, "1 (C), 2 (H) or 3 (W)"},
            {"start", AttrType::Int, 1, 1, {}, Range::NonNegative, true},
            {"end", AttrType::Int, 1, 1, {}, Range::Positive, true, "exclusive, <= its size"}},
           {}},
          0, "into the sliced indices, zeros elsewhere", "slice_forward_ref, slice_backward_ref"),
      row("pad", make_pad,
          {{{"padding",
             AttrType::Int,
             1,
             4,
             {},
             Range::NonNegative,
             true,
             "[t, l, b, r]; as conv2d"},
            {"value", AttrType::Number, 1, 1, {0.0}},
            {"reflect", AttrType::Bool, 1, 1, {0}}},
           {}},
          0, "crop the padding; reflect folds the mirrored parts back",
          "pad_forward_ref, pad_backward_ref"),
      row("channel_shuffle", make_channel_shuffle,
          {{{"groups", AttrType::Int, 1, 1, {}, Range::Positive, true, "divides C"}}, {}}, 0,
          "the inverse permutation", "channel_shuffle_forward_ref, channel_shuffle_backward_ref"),
      // Activations: element-wise, the backward needs the forward input x and
      // works in place inside each sample's region. Rectifying kinds: deconvnet relu(g), guided
      // relu(g)*f'(x), backprop g*f'(x); the others g*f'(x) under every rule (docs/PROJECTION.md).
      rectifier("leaky_relu", make_leaky_relu, {{{"alpha", AttrType::Number, 1, 1, {0.01}}}, {}},
                kActivation,
                "deconvnet relu(g); guided relu(g)*f'(x); backprop g*f'(x); f' = x>0 ? 1 : alpha",
                "relu(g)", "relu(g)*(x>0 ? 1 : alpha)", "g*(x>0 ? 1 : alpha)", kActivationRef),
      rectifier("prelu", make_prelu, {{}, {{"slope", true}}}, kActivation,
                "deconvnet relu(g); guided relu(g)*f'(x); backprop g*f'(x); f' = x>0 ? 1 : "
                "slope[c]",
                "relu(g)", "relu(g)*(x>0 ? 1 : slope[c])", "g*(x>0 ? 1 : slope[c])",
                kActivationRef),
      rectifier(
          "clip", make_clip,
          {{{"min", AttrType::Number, 1, 1, {-3.4e38}}, {"max", AttrType::Number, 1, 1, {3.4e38}}},
           {}},
          kActivation,
          "min == 0 (ReLU6): deconvnet relu(g); guided relu(g)*[min<x<max]; backprop "
          "g*[min<x<max]; min != 0: g*[min<x<max] under every rule",
          "relu(g)", "relu(g)*[min<x<max]", "g*[min<x<max]", kActivationRef),
      row("sigmoid", make_sigmoid, {}, kActivation, "g*s*(1-s), s = sigmoid(x)", kActivationRef),
      row("tanh", make_tanh, {}, kActivation, "g*(1-tanh(x)^2)", kActivationRef),
      rectifier("silu", make_silu, {}, kActivation,
                "deconvnet relu(g); guided relu(g)*f'(x); backprop g*f'(x); f' = s*(1+x*(1-s)), "
                "s = sigmoid(x)",
                "relu(g)", "relu(g)*s*(1+x*(1-s)), s = sigmoid(x)",
                "g*s*(1+x*(1-s)), s = sigmoid(x)", kActivationRef),
      row("hardsigmoid", make_hardsigmoid,
          {{{"alpha", AttrType::Number, 1, 1, {0.2}}, {"beta", AttrType::Number, 1, 1, {0.5}}}, {}},
          kActivation, "g*alpha*[0 < alpha*x+beta < 1]", kActivationRef),
      rectifier("hardswish", make_hardswish, {}, kActivation,
                "deconvnet relu(g); guided relu(g)*f'(x); backprop g*f'(x); f' = 0 (x<=-3), "
                "x/3+1/2 (-3<x<3), 1 (x>=3)",
                "relu(g)", "relu(g)*(x<=-3 ? 0 : x<3 ? x/3+1/2 : 1)",
                "g*(x<=-3 ? 0 : x<3 ? x/3+1/2 : 1)", kActivationRef),
      rectifier("mish", make_mish, {}, kActivation,
                "deconvnet relu(g); guided relu(g)*f'(x); backprop g*f'(x); f' = t+x*s*(1-t^2), "
                "t = tanh(softplus(x)), s = sigmoid(x)",
                "relu(g)", "relu(g)*(t+x*s*(1-t^2)), t = tanh(softplus(x)), s = sigmoid(x)",
                "g*(t+x*s*(1-t^2)), t = tanh(softplus(x)), s = sigmoid(x)", kActivationRef),
      rectifier("elu", make_elu, {{{"alpha", AttrType::Number, 1, 1, {1.0}}}, {}}, kActivation,
                "deconvnet relu(g); guided relu(g)*f'(x); backprop g*f'(x); f' = x>0 ? 1 : "
                "alpha*e^x",
                "relu(g)", "relu(g)*(x>0 ? 1 : alpha*e^x)", "g*(x>0 ? 1 : alpha*e^x)",
                kActivationRef),
      rectifier("gelu", make_gelu, {{{"tanh", AttrType::Bool, 1, 1, {0}}}, {}}, kActivation,
                "deconvnet relu(g); guided relu(g)*f'(x); backprop g*f'(x); f' = Phi(x)+x*phi(x) "
                "(tanh: the tanh form's derivative)",
                "relu(g)", "relu(g)*gelu'(x), gelu'(x) = Phi(x)+x*phi(x) (tanh: its form's)",
                "g*gelu'(x), gelu'(x) = Phi(x)+x*phi(x) (tanh: its form's)", kActivationRef),
      row("conv_transpose2d", make_conv_transpose2d,
          {{kernel_size(false, "the weight's (kh, kw)"),
            stride({1}, ""),
            kPadding,
            {"output_padding", AttrType::Int, 1, 2, {0}, Range::NonNegative},
            kDilation,
            {"groups", AttrType::Int, 1, 1, {1}, Range::Positive}},
           {{"weight", true}, {"bias", false}}},
          kRegionOnly, "convolution with the same filters; bias unused",
          "conv_transpose2d_forward_ref, conv_transpose2d_backward_ref"),
      row("layer_norm", make_layer_norm,
          {{{"epsilon", AttrType::Number, 1, 1, {1e-5}, Range::Positive}},
           {{"scale", true}, {"bias", false}}},
          kRegionOnly | kNeedsInput, "layer norm Jacobian at the forward input; bias unused",
          "layer_norm_forward_ref, layer_norm_backward_ref"),
      // Layout kinds of a detection head's decode (ONNX rank-3 tensors (N, A, B) are (N, A, 1, B)).
      row("reshape", make_reshape,
          {{{"shape", AttrType::Int, 3, 3, {}, Range::Positive, true, "per-sample [C, H, W]"}}, {}},
          0, "reshape back", "reshape_forward_ref, reshape_backward_ref"),
      row("transpose", make_transpose,
          {{{"perm",
             AttrType::Int,
             3,
             3,
             {},
             Range::NonNegative,
             true,
             "a permutation of [0, 1, 2] (C, H, W)"}},
           {}},
          0, "the inverse permutation", "transpose_forward_ref, transpose_backward_ref"),
  };
  return kinds;
}

std::unique_ptr<Layer> make_layer(const LayerSpec& spec) {
  for (const auto& k : layer_kinds())
    if (spec.kind == k.name) {
      std::unique_ptr<Layer> layer = k.make(spec);
      layer->row_ = &k;
      layer->caps_ = k.caps;
      layer->needs_ = k.needs;
      layer->rectifying_ = k.rectifying;
      return layer;
    }
  std::string known;
  for (const auto& k : layer_kinds()) known += (known.empty() ? "" : ", ") + std::string(k.name);
  fail(ErrorKind::Graph,
       "layer '" + spec.name + "': unknown kind '" + spec.kind + "' (known: " + known + ")");
}

}  // namespace pydeconv
