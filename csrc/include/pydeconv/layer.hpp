// pydeconv: layer specifications (what a model file describes) and the layer interface that the
// executor drives through the registry.
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pydeconv/kernels.hpp"
#include "pydeconv/tensor.hpp"

namespace pydeconv {

// The three projection rules; they differ only at ReLU-like nonlinearities.
enum class Rule { Deconvnet, Guided, Backprop };
Rule parse_rule(const std::string& name);  // "deconvnet" | "guided" | "backprop"

// One layer as the model file describes it. Attributes are numbers (bools as 0/1); a scalar is a
// one-element list.
struct LayerSpec {
  std::string name;
  std::string kind;
  std::vector<std::string> inputs;
  std::map<std::string, std::vector<double>> attrs;
  std::map<std::string, Tensor> params;
};

// What a layer's backward needs kept from the forward pass.
struct Needs {
  bool input = false;     // the forward inputs (LRN: the Jacobian point)
  bool output = false;    // the forward output (softmax)
  bool mask = false;      // [input > 0] (ReLU for guided/backprop)
  bool switches = false;  // max pooling switches
};

// Receptive-field arithmetic of one layer: output position p covers input [p*stride - pad, ... + size).
struct RfStep {
  int64_t size_h = 1, size_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  bool global = false;  // every output depends on the whole input (linear, global pooling)
};

struct ForwardArgs {
  std::vector<const Tensor*> in;
  Tensor* out = nullptr;
  IndexTensor* switches = nullptr;  // allocated by the executor when needs().switches
  // When not null (needs().mask under Keep::Minimal), the layer also writes [out > 0] here, one
  // byte per element, in the same pass. `out` may be `in[0]`'s own buffer for layers with
  // forward_in_place().
  TensorT<uint8_t>* mask = nullptr;
  // Conv + ReLU fused (layers with fuses_relu()): when not null, the layer also writes relu(out)
  // here (it may be `out` itself: then only the rectified values are written) and, when
  // relu_mask is not null, [out > 0]; the executor then skips the ReLU layer's own pass.
  Tensor* relu_out = nullptr;
  TensorT<uint8_t>* relu_mask = nullptr;
};

struct BackwardArgs {
  Rule rule = Rule::Deconvnet;
  const Tensor* gout = nullptr;  // batch B = N * reps
  Regions region;                // per sample: where gout may be non-zero
  std::vector<Tensor*> gin;      // accumulate here; same order as inputs; batch B. For layers
                                 // with backward_in_place(), gin[0] may be gout's own buffer:
                                 // then write the result over it instead of adding
  std::vector<const Tensor*> in;  // forward inputs when needs().input (batch N)
  const Tensor* out = nullptr;    // forward output when needs().output
  const TensorT<uint8_t>* mask = nullptr;  // when needs().mask
  const IndexTensor* switches = nullptr;
  int64_t reps = 1;
  // Set by the executor only for layers with backward_overwrites(), when gin[0] is fresh: it
  // holds anything inside its new regions too, and the backward must write (not add) every
  // element of the input regions of `region`, not just clear-then-accumulate.
  bool overwrite = false;
};

class Layer {
 public:
  explicit Layer(const LayerSpec& spec) : spec_(spec) {}
  virtual ~Layer() = default;
  const std::string& name() const { return spec_.name; }
  const std::string& kind() const { return spec_.kind; }
  const LayerSpec& spec() const { return spec_; }

  // Validates attributes and parameters against the input shapes (batch 1) and returns the
  // output shape. Throws Error naming the layer and the field.
  virtual Shape infer(const std::vector<Shape>& in) = 0;
  virtual void forward(const Ctx& ctx, ForwardArgs& a) const = 0;
  virtual void backward(const Ctx& ctx, BackwardArgs& a) const = 0;
  virtual Needs needs() const { return {}; }
  // Element-wise layers whose forward may write over their input (out aliasing in[0]); the
  // executor does so when nothing else reads that input afterwards.
  virtual bool forward_in_place() const { return false; }
  // Layers that can also produce a following ReLU's output in their own pass (ForwardArgs).
  virtual bool fuses_relu() const { return false; }
  // Element-wise layers whose backward can overwrite gout with gin (saves a buffer per layer).
  virtual bool backward_in_place() const { return false; }
  // Layers whose fast backward reads gout only inside its regions (then the gradient buffer
  // may hold anything outside them: it is not cleared in full).
  virtual bool backward_reads_region_only() const { return false; }
  // Layers whose fast backward can write its one input's gradient over the whole input region
  // (input_region of each sample's region) instead of adding to it (BackwardArgs::overwrite):
  // the executor then skips clearing that region first.
  virtual bool backward_overwrites() const { return false; }
  virtual RfStep rf() const { return {}; }
  // The input region that can be non-zero when the output's region `r` is (all inputs alike).
  virtual Region input_region(const Region& r, const Shape& in) const;
  // A byte budget, shared by a net's layers, for caches that trade memory for speed (conv:
  // transformed filters). Called once by the net after building every layer.
  virtual void share_cache_budget(const std::shared_ptr<std::atomic<int64_t>>& bytes) { (void)bytes; }
  // Bytes such caches hold now.
  virtual int64_t cache_bytes() const { return 0; }
  int64_t param_count() const;
  // A parameter in its stored layout (layers that keep only a packed copy rebuild it).
  virtual Tensor parameter(const std::string& key) const;

 protected:
  // Attribute helpers: name the layer and field in every error.
  [[noreturn]] void bad(const std::string& what) const;
  std::vector<double> attr(const std::string& key, std::vector<double> dflt) const;
  std::vector<int64_t> ints(const std::string& key, std::vector<int64_t> dflt, size_t n_min,
                            size_t n_max) const;
  int64_t int1(const std::string& key, int64_t dflt) const;
  double num1(const std::string& key, double dflt) const;
  const Tensor* param(const std::string& key, bool required) const;
  void expect_inputs(const std::vector<Shape>& in, size_t n_min, size_t n_max) const;
  void check_attrs(std::initializer_list<const char*> known) const;
  void check_params(std::initializer_list<const char*> known) const;

  LayerSpec spec_;
};

// The registry: one row per layer kind.
struct LayerKind {
  const char* name;
  std::unique_ptr<Layer> (*make)(const LayerSpec&);
  const char* rule;  // one line: how the signal goes back down
};
const std::vector<LayerKind>& layer_kinds();
std::unique_ptr<Layer> make_layer(const LayerSpec& spec);  // throws Error(Graph) for unknown kinds

}  // namespace pydeconv
