// pydeconv: the graph executor. A Net is built once from a GraphSpec (validated completely), is
// immutable afterwards and safe to use from several threads at once: every call allocates its own
// scratch, and results live in the Trace the caller owns.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pydeconv/ctx.hpp"
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

struct GraphSpec {
  std::string input_name = "input";
  int64_t c = 0, h = 0, w = 0;  // the input's per-sample shape
  std::vector<LayerSpec> layers;
  std::vector<std::string> outputs;  // empty: the last layer
  // Other accepted names of layers (alias -> layer name): an importer's short names keep the
  // long names older files used working. Every call that takes a layer name takes an alias.
  std::map<std::string, std::string> aliases;
};

// Per layer: output shape (batch 1) and receptive field in input pixels. Output position (y, x)
// sees rows rf_start_h + y * rf_stride_h ... + rf_size_h - 1 (likewise columns; may pass the
// border).
struct LayerInfo {
  std::string name, kind;
  std::vector<std::string> inputs;
  Shape shape;
  int64_t rf_size_h = 1, rf_size_w = 1, rf_stride_h = 1, rf_stride_w = 1;
  int64_t rf_start_h = 0, rf_start_w = 0;
  int64_t params = 0;
  std::string rule;  // how the signal goes back down through this layer
};

// One layer a projection passes and how it sends the signal down under one rule (Net::rules).
struct LayerRule {
  std::string name, kind;
  std::string rule;  // its layer kind's registry text for that rule
};

enum class Keep {
  All,      // every layer's output (for inspection)
  Minimal,  // only what projections need: switches, ReLU masks, LRN and activation inputs,
            // softmax outputs
};

class Net;

// What a forward pass recorded. Owned by the caller; refers to the Net that made it.
class Trace {
 public:
  int64_t batch() const { return batch_; }
  bool minimal() const { return minimal_; }
  // Null when that layer's output was not kept (Keep::Minimal) or not computed (upto).
  const Tensor* activation(int tensor_id) const;
  const IndexTensor* switches(int tensor_id) const;
  const TensorT<uint8_t>* mask(int tensor_id) const;
  bool ran(int tensor_id) const;  // whether the forward pass computed that tensor

 private:
  friend class Net;
  const void* net_ = nullptr;
  int64_t batch_ = 0;
  bool minimal_ = false;
  std::vector<Tensor> acts_;  // by tensor id (0 = the input, i + 1 = layer i)
  std::vector<IndexTensor> switches_;
  std::vector<TensorT<uint8_t>> masks_;
  std::vector<bool> ran_;
};

// Where the start signal of a projection comes from.
struct At {
  enum Kind { Max, Map, Position } kind = Max;
  int64_t y = 0, x = 0;
};

// Where a start signal sits in its channel's map: the position an At chose (At::Max: the
// strongest activation, ties to the first in row-major order), or (-1, -1) for At::Map.
struct Position {
  int64_t y = -1, x = -1;
};

struct Region;  // internal: a rectangle of a feature map a projection works in

// The working memory project_channels may use by default: 256 MiB (a dozen channels of VGG16
// projected together, ~20 MB each). The one definition; Python's max_memory=None means it.
inline constexpr int64_t kDefaultProjectMemory = int64_t(256) << 20;

// How Net::project_channels may split its work.
struct ProjectOptions {
  // Bytes the projection's working buffers may take at once (> 0). Estimated before anything
  // is allocated from the shapes of the layers the projection passes
  // (Net::projection_bytes_per_sample); channels are then projected in chunks that fit, at least
  // one channel (for every sample) per chunk. The result itself comes on top. Chunks give the
  // same bits as one batch.
  int64_t max_memory = kDefaultProjectMemory;
  // When set: called from the calling thread after each chunk with (channels done, channels in
  // all). An exception it throws ends the projection.
  std::function<void(int64_t, int64_t)> progress;
  // When set: the layer (name or alias) the projection stops at. The result is then the signal
  // at that layer's OUTPUT (its shape, batch N * K) instead of at the input pixels: under
  // Rule::Backprop the gradient of the start signal's dot product with the start layer's output
  // with respect to `to`'s output. The walk ends once every layer after `to` has sent its signal
  // down; paths that bypass `to` (a skip connection around it) do not reach it. `to` must be a
  // layer the projection passes (Net::rules lists them), else Error(Graph); `to` == the start
  // layer gives the start signal itself.
  std::string to;
};

class Net {
 public:
  explicit Net(GraphSpec spec);  // throws Error(Graph/Shape) naming the layer and field
  ~Net();
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  const std::vector<LayerInfo>& info() const;
  const std::vector<std::string>& outputs() const;
  int layer_index(const std::string& name) const;  // a name or alias; throws Error(NotFound)
  int64_t num_layers() const;
  // Every parameter in its stored layout as ("LAYER/PARAM", tensor), in layer order (layers that
  // keep only a packed copy rebuild it).
  std::vector<std::pair<std::string, Tensor>> parameters() const;

  // Runs the layers that `upto` (default: every graph output) depends on. Under Keep::Minimal the
  // outputs of `also_keep` are kept too (e.g. the layers to be projected from).
  Trace forward(const Ctx& ctx, const Tensor& x, const std::string& upto = "",
                Keep keep = Keep::All, const std::vector<std::string>& also_keep = {}) const;
  // Bytes the layers' speed caches hold (Winograd-transformed filters of small-map convs, kept
  // after the first forward that needs them); at most a quarter of the parameters' bytes.
  int64_t cache_bytes() const;
  // Uninitialised storage for an input batch of shape `s` (the caller fills it) from the buffer
  // pool the net's passes draw on: repeated passes reuse its memory instead of fresh pages.
  Tensor input_buffer(const Shape& s) const;
  // The activation of a layer in a trace; throws when it was not kept or computed.
  const Tensor& activation(const Trace& t, const std::string& layer) const;
  const IndexTensor& switches(const Trace& t, const std::string& layer) const;

  // Start signals (batch N * channels.size(), sample n * K + k) from the layer's activation.
  // Channels and positions are checked here (Error(Range) naming the layer).
  Tensor start_signal(const Trace& t, const std::string& layer,
                      const std::vector<int64_t>& channels, const At& at) const;
  // The positions start_signal and project_channels use for the same arguments (N * K entries,
  // sample n * K + k), so callers can show where each projection came from.
  std::vector<Position> positions(const Trace& t, const std::string& layer,
                                  const std::vector<int64_t>& channels, const At& at) const;
  // Sends `start` (batch N * reps, the layer's output shape) down to the input under `rule`.
  // Returns the signal at the input, batch N * reps; with `to`, the signal at that layer's
  // output instead (ProjectOptions::to).
  Tensor project(const Ctx& ctx, const Trace& t, const std::string& layer, const Tensor& start,
                 Rule rule, const std::string& to = "") const;
  // start_signal + project in one call (batch N * channels.size(), sample n * K + k); the start's
  // non-zero regions are known here, so nothing scans it.
  // Runs in chunks of channels under opt.max_memory (ProjectOptions).
  Tensor project_channels(const Ctx& ctx, const Trace& t, const std::string& layer,
                          const std::vector<int64_t>& channels, const At& at, Rule rule,
                          const ProjectOptions& opt = {}) const;
  // Peak bytes of the buffers a projection from `layer` holds per start signal (per sample and
  // channel): the largest set of gradients alive at once on its way down, start signal included;
  // with `to`, on its way down to that layer (ProjectOptions::to), the result included.
  int64_t projection_bytes_per_sample(const std::string& layer, const std::string& to = "") const;
  // Every layer a projection from `layer` passes (the layer itself first), in the order the
  // signal meets them, with how each sends it down under `rule`: the rule's text of its kind's
  // registry row; a layer that does not rectify (sigmoid, clip with min != 0...) its gradient's
  // under every rule.
  std::vector<LayerRule> rules(const std::string& layer, Rule rule) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  // The start signal of `channels` at `at`, and with `regions` each sample's non-zero box. With
  // `region_only` (the layer's backward reads gout only inside those boxes) the buffer comes
  // from the pool and only the boxes are cleared: the rest is never read.
  // The layer's activation, after checking the trace, the channels and the position.
  const Tensor& check_start_args(const Trace& t, const std::string& layer,
                                 const std::vector<int64_t>& channels, const At& at) const;
  Tensor make_start(const Trace& t, const std::string& layer, const std::vector<int64_t>& channels,
                    const At& at, std::vector<Region>* regions, bool region_only = false) const;
  // Fills region[id] for every tensor a projection from tensor `target` reaches, from
  // region[target] (what project_regions computes on its way, without the signals).
  // Walks down to tensor `stop` only (0: the input).
  void walk_regions(int target, std::vector<std::vector<Region>>& region, int stop = 0) const;
  // The tensor id a projection from `layer` stops at: 0 (the input) for an empty `to`, else
  // `to`'s output after checking that the projection passes it (Error(Graph) naming both).
  int stop_tensor(const std::string& layer, const std::string& to) const;
  // choose_by: per tensor id, the regions of the whole batch when `start` is one chunk of it
  // (kernels choose by them: BackwardArgs::choose_by).
  Tensor project_regions(const Ctx& ctx, const Trace& t, const std::string& layer,
                         const Tensor& start, std::vector<Region> regions, Rule rule,
                         const std::vector<std::vector<Region>>* choose_by = nullptr,
                         int stop = 0) const;
};

}  // namespace pydeconv
