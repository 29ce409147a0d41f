// pydeconv (internal): the layer interface that the executor drives through the registry.
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "pydeconv/net.hpp"
#include "pydeconv/tensor.hpp"

namespace pydeconv {

// What a layer's backward needs kept from the forward pass.
struct Needs {
  bool input = false;     // the forward inputs (LRN: the Jacobian point)
  bool output = false;    // the forward output (softmax)
  bool mask = false;      // [input > 0] (ReLU for guided/backprop)
  bool switches = false;  // max pooling switches
};

// What the executor and the projection may do with a layer kind, declared by its registry row
// (a layer may narrow it for its own geometry while inferring its shape).
struct Caps {
  // Element-wise: the forward may write over its one input (out aliasing in[0]); the executor
  // does so when nothing else reads that input afterwards.
  bool forward_in_place = false;
  // Can also produce a following ReLU's output in its own pass (ForwardArgs::relu).
  bool fuses_relu = false;
  // Is a ReLU that such a producer can compute: then it does not run itself.
  bool fusable_relu = false;
  // Element-wise: the backward can overwrite gout with gin (saves a buffer per layer).
  bool backward_in_place = false;
  // The fast backward reads gout only inside its regions (then the gradient buffer may hold
  // anything outside them: it is not cleared in full).
  bool backward_region_only = false;
  // The fast backward can write its one input's gradient over the whole input region
  // (input_region of each sample's region) instead of adding to it (BackwardArgs::overwrite):
  // the executor then skips clearing that region first.
  bool backward_overwrites = false;
};

// Receptive-field arithmetic of one layer: output position p covers input [p*stride - pad, ... +
// size).
struct RfStep {
  int64_t size_h = 1, size_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  bool global = false;  // every output depends on the whole input (linear, global pooling)
  // Upsampling layers (transposed convolution, nearest upsampling): the input is first spread out
  // by `up`, input position i at position i*up with zeros between, and the window above applies
  // to that: output p covers the inputs i with p*stride - pad <= i*up < p*stride - pad + size.
  // 1: the plain window. (A transposed conv of stride s, kernel k, dilation d, padding pt: up s,
  // stride 1, size d*(k-1)+1, pad d*(k-1)-pt; nearest upsampling by s: up s, size s, pad s-1.)
  int64_t up_h = 1, up_w = 1;
};

// A ReLU computed by the layer before it, in the same pass (Caps::fuses_relu / fusable_relu).
struct FusedRelu {
  // When not null, the layer also writes relu(out) here (it may be `out` itself: then only the
  // rectified values are written) and, when `mask` is not null, [out > 0].
  Tensor* out = nullptr;
  TensorT<uint8_t>* mask = nullptr;
};

struct ForwardArgs {
  std::vector<const Tensor*> in;
  Tensor* out = nullptr;            // may be `in[0]`'s own buffer for Caps::forward_in_place kinds
  IndexTensor* switches = nullptr;  // allocated by the executor when needs().switches
  // When not null (needs().mask under Keep::Minimal), the layer also writes [out > 0] here, one
  // byte per element, in the same pass.
  TensorT<uint8_t>* mask = nullptr;
  FusedRelu relu;  // the executor then skips the ReLU layer's own pass
};

struct BackwardArgs {
  Rule rule = Rule::Deconvnet;
  const Tensor* gout = nullptr;   // batch B = N * reps
  Regions region;                 // per sample: where gout may be non-zero
  std::vector<Tensor*> gin;       // accumulate here; same order as inputs; batch B. For
                                  // Caps::backward_in_place kinds, gin[0] may be gout's own
                                  // buffer: then write the result over it instead of adding
  std::vector<const Tensor*> in;  // forward inputs when needs().input (batch N)
  const Tensor* out = nullptr;    // forward output when needs().output
  const TensorT<uint8_t>* mask = nullptr;  // when needs().mask
  const IndexTensor* switches = nullptr;
  int64_t reps = 1;
  // Set by the executor only under Caps::backward_overwrites, when gin[0] is fresh: it holds
  // anything inside its new regions too, and the backward must write (not add) every element of
  // the input regions of `region`, not just clear-then-accumulate.
  bool overwrite = false;
  // Set when the projection runs in chunks (Net::project_channels under max_memory): the regions
  // of the whole batch at gout. Kernels whose choice depends on the batch (Winograd or not, GEMV
  // or GEMM) choose by these, so each chunk gets the bits of the one big batch.
  const Regions* choose_by = nullptr;
};

struct LayerKind;

class Layer {
 public:
  explicit Layer(const LayerSpec& spec) : spec_(spec) {}
  virtual ~Layer() = default;
  const std::string& name() const { return spec_.name; }
  const std::string& kind() const { return spec_.kind; }
  const LayerSpec& spec() const { return spec_; }
  const LayerKind& row() const { return *row_; }
  const Caps& caps() const { return caps_; }
  const Needs& needs() const { return needs_; }
  // Whether the three projection rules differ at this layer (its row's `rectifying`; a kind may
  // decide in shape(): clip rectifies only when min == 0). A layer that does not rectify sends
  // the signal down by its exact gradient under every rule.
  bool rectifying() const { return rectifying_; }
  // How this layer sends the signal down under `rule`: its row's text for that rule, or the
  // gradient's (the backprop text) when it does not rectify.
  const char* rule_text(Rule rule) const;
  // The one line Net::info() reports: the row's `rule`, or the gradient's text when the layer
  // does not rectify.
  const char* rule_line() const;

  // Checks the spec against the kind's schema (attributes, parameters, input count), then runs
  // the kind's shape rule; returns the output shape (batch 1). Throws Error naming the layer and
  // the field.
  Shape infer(const std::vector<Shape>& in);
  virtual void forward(const Ctx& ctx, ForwardArgs& a) const = 0;
  virtual void backward(const Ctx& ctx, BackwardArgs& a) const = 0;
  virtual RfStep rf() const { return {}; }
  // The input region that can be non-zero when the output's region `r` is (all inputs alike, by
  // rf(); kinds whose regions the window arithmetic cannot say override it: mul's broadcast
  // inputs, reflect padding).
  virtual Region input_region(const Region& r, const Shape& in) const;
  // A byte budget, shared by a net's layers, for caches that trade memory for speed (conv:
  // transformed filters). Called once by the net after building every layer.
  virtual void share_cache_budget(const std::shared_ptr<std::atomic<int64_t>>& bytes) {
    (void)bytes;
  }
  // Bytes such caches hold now.
  virtual int64_t cache_bytes() const { return 0; }
  int64_t param_count() const;
  // A parameter in its stored layout (layers that keep only a packed copy rebuild it).
  virtual Tensor parameter(const std::string& key) const;

 protected:
  // The kind's own shape rule and parameter checks, after the schema's (infer): attributes are
  // then known, of the declared arity, integer where declared so and inside their range, and
  // required parameters present and finite.
  virtual Shape shape(const std::vector<Shape>& in) = 0;
  [[noreturn]] void bad(const std::string& what) const;  // names the layer
  // An attribute's values, or `dflt` when absent.
  std::vector<int64_t> ints(const std::string& key, std::vector<int64_t> dflt) const;
  // One-value attributes, or the schema's default when absent.
  int64_t int1(const std::string& key) const;
  double num1(const std::string& key) const;
  const Tensor* param(const std::string& key) const;  // null when absent

  LayerSpec spec_;
  Caps caps_;  // the row's; a kind may clear a capability its geometry lacks (in shape())
  bool rectifying_ = false;  // the row's; a kind may decide in shape() (clip)

 private:
  friend std::unique_ptr<Layer> make_layer(const LayerSpec& spec);
  void check_schema(const std::vector<Shape>& in) const;
  const LayerKind* row_ = nullptr;
  Needs needs_;
};

// The schema of one attribute. Integers (and bools, as 0/1) must be whole numbers of at most 1e9.
enum class AttrType { Int, Bool, Number, Ignored };
// The range every value of an attribute must lie in (checked before the kind's shape rule).
enum class Range { Any, Positive, NonNegative, One };
struct AttrSchema {
  const char* name;
  AttrType type;
  int n_min = 1, n_max = 1;  // how many values
  std::vector<double> dflt;  // the value when absent; empty: see `note`
  Range range = Range::Any;
  bool required = false;
  const char* note = "";  // the default when it is not a constant
};
struct ParamSchema {
  const char* name;
  bool required;
};
struct Schema {
  std::vector<AttrSchema> attrs;
  std::vector<ParamSchema> params;
  int min_inputs = 1, max_inputs = 1;  // max_inputs 0: no limit
};

// The registry: one row per layer kind (layers/registry.cpp).
struct LayerKind {
  const char* name;
  std::unique_ptr<Layer> (*make)(const LayerSpec&);
  Schema schema;
  Caps caps;
  Needs needs;
  const char* rule;       // one line: how the signal goes back down
  const char* reference;  // the reference kernels (kernels/ref/) that Ctx::reference runs
  // How the signal goes down under each rule, indexed by Rule (deconvnet, guided, backprop):
  // the same text three times for most kinds. The backprop text is the exact gradient's.
  const char* rules[3];
  // Whether the rules differ (ReLU-like kinds): then rules[] hold three texts. A layer of a
  // rectifying kind may still decide it does not rectify (Layer::rectifying).
  bool rectifying;
};
const std::vector<LayerKind>& layer_kinds();
std::unique_ptr<Layer> make_layer(const LayerSpec& spec);  // throws Error(Graph) for unknown kinds

}  // namespace pydeconv
