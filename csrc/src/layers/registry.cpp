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

LayerKind row(const char* name, std::unique_ptr<Layer> (*make)(const LayerSpec&), Schema schema,
              unsigned flags, const char* rule, const char* reference) {
  return {name, make, std::move(schema), caps(flags), needs(flags), rule, reference};
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
      row("relu", make_relu, {},
          kForwardInPlace | kFusableRelu | kBackwardInPlace | kRegionOnly | kNeedsMask,
          "deconvnet relu(g); guided relu(g)*[x>0]; backprop g*[x>0]",
          "relu_forward_ref, relu_backward_ref"),
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
      row("add", make_add, {{}, {}, 2, kAny}, kRegionOnly, "copy to every input",
          "add_forward_ref, add_backward_ref"),
      row("concat", make_concat, {{{"axis", AttrType::Int, 1, 1, {1}, Range::One}}, {}, 2, kAny},
          kRegionOnly, "split by channels", "concat_forward_ref, concat_backward_ref"),
      // -- issue 14: convt
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
      return layer;
    }
  std::string known;
  for (const auto& k : layer_kinds()) known += (known.empty() ? "" : ", ") + std::string(k.name);
  fail(ErrorKind::Graph,
       "layer '" + spec.name + "': unknown kind '" + spec.kind + "' (known: " + known + ")");
}

}  // namespace pydeconv
