// Building a Net: validation, topological order, shape inference, receptive fields.
#include <algorithm>
#include <cctype>
#include <set>

#include "net_impl.hpp"
#include "pydeconv/limits.hpp"

namespace pydeconv {
namespace {

// Kahn's algorithm, stable: among ready layers the earliest listed runs first.
std::vector<size_t> topo_order(const GraphSpec& g, const std::map<std::string, size_t>& idx) {
  const size_t n = g.layers.size();
  std::vector<int> missing(n, 0);
  std::vector<std::vector<size_t>> users(n);
  for (size_t i = 0; i < n; ++i) {
    for (const auto& in : g.layers[i].inputs) {
      if (in == g.input_name) continue;
      auto it = idx.find(in);
      if (it == idx.end())
        fail(ErrorKind::Graph, "layer '" + g.layers[i].name + "': input '" + in +
                                   "' is neither the graph input nor a layer (dangling input)");
      ++missing[i];
      users[it->second].push_back(i);
    }
  }
  std::set<size_t> ready;
  for (size_t i = 0; i < n; ++i)
    if (missing[i] == 0) ready.insert(i);
  std::vector<size_t> order;
  while (!ready.empty()) {
    size_t i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(i);
    for (size_t u : users[i])
      if (--missing[u] == 0) ready.insert(u);
  }
  if (order.size() != n) {
    std::string cyc;
    for (size_t i = 0; i < n; ++i)
      if (missing[i] > 0) cyc += (cyc.empty() ? "'" : ", '") + g.layers[i].name + "'";
    fail(ErrorKind::Graph, "the graph has a cycle through layers " + cyc);
  }
  return order;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Letter runs and digit runs of a lower-cased name: "block5_conv3" -> {block, conv}, {5, 3}.
void name_tokens(const std::string& s, std::set<std::string>& words,
                 std::vector<std::string>& numbers) {
  std::string run;
  auto flush = [&] {
    if (run.empty()) return;
    if (std::isdigit(static_cast<unsigned char>(run[0])))
      numbers.push_back(run);
    else
      words.insert(run);
    run.clear();
  };
  for (char c : s) {
    const bool digit = std::isdigit(static_cast<unsigned char>(c)) != 0;
    if (!digit && !std::isalpha(static_cast<unsigned char>(c))) {
      flush();
      continue;
    }
    if (!run.empty() && (std::isdigit(static_cast<unsigned char>(run[0])) != 0) != digit) flush();
    run += c;
  }
  flush();
}

// Another naming of the same layer: the same numbers in order and no word the candidate lacks
// ("conv5_3" / "block5_conv3", "pool4" / "block4_pool": Caffe's VGG names against Keras').
bool same_tokens(const std::string& want, const std::string& have) {
  std::set<std::string> ww, hw;
  std::vector<std::string> wn, hn;
  name_tokens(want, ww, wn);
  name_tokens(have, hw, hn);
  if (wn != hn || ww.empty()) return false;
  for (const auto& w : ww)
    if (!hw.count(w)) return false;
  return true;
}

// The message for a name that is neither a layer nor an alias: the three closest layer names (by
// edit distance to the name or any alias, case-insensitive; a name containing the other, or with
// the same words and numbers, counts as close) and how to list them all. A net may have hundreds
// of layers; a truncated list hid the one the user needed.
std::string unknown_layer(const std::string& name, const std::map<std::string, int>& by_name,
                          const std::vector<LayerInfo>& info) {
  const std::string want = lower(name);
  std::vector<std::pair<size_t, int>> scored;  // (distance, layer index)
  for (const auto& kv : by_name) {
    const std::string have = lower(kv.first);
    size_t d = edit_distance(want, have);
    const bool contains =
        have.find(want) != std::string::npos || want.find(have) != std::string::npos;
    if (!want.empty() && contains) d = std::min<size_t>(d, 1);
    if (same_tokens(want, have)) d = 0;
    scored.emplace_back(d, kv.second);
  }
  std::sort(scored.begin(), scored.end());
  std::string msg = "unknown layer '" + name + "'";
  std::vector<int> shown;
  for (const auto& s : scored) {
    if (shown.size() == 3) break;
    if (std::find(shown.begin(), shown.end(), s.second) != shown.end()) continue;
    shown.push_back(s.second);
    msg += (shown.size() == 1 ? " (closest: '" : ", '") + info[size_t(s.second)].name + "'";
  }
  if (!shown.empty()) msg += ")";
  return msg + "; net.layers or `pydeconv info MODEL` lists all " + std::to_string(info.size()) +
         " layers";
}

struct Rf {
  int64_t size_h = 1, size_w = 1, stride_h = 1, stride_w = 1, start_h = 0, start_w = 0;
};

// Whether an output shape is usable: every size positive and at most 2^31 values in all, checked
// without forming the product (declared attributes such as an upsample scale or a
// conv_transpose2d stride of 1e9 make single sizes near 2^61, whose product overflows int64).
bool output_in_range(const Shape& s) {
  const int64_t cap = int64_t(1) << 31;
  int64_t p = 1;
  for (int64_t d : {s.n, s.c, s.h, s.w}) {
    if (d <= 0 || d > cap / p) return false;
    p *= d;
  }
  return true;
}

}  // namespace

std::vector<bool> Net::Impl::ancestors(int target) const {
  std::vector<bool> need(shapes.size(), false);
  need[target] = true;
  for (int t = target; t >= 1; --t) {
    if (!need[t]) continue;
    for (int j : in_ids[t - 1]) need[j] = true;
  }
  return need;
}

Net::Net(GraphSpec g) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (g.input_name.empty()) fail(ErrorKind::Graph, "the graph input has no name");
  const Limits lim = limits();
  const std::string input_shape = "input '" + g.input_name + "': shape (" + std::to_string(g.c) +
                                  ", " + std::to_string(g.h) + ", " + std::to_string(g.w) + ")";
  if (g.c <= 0 || g.h <= 0 || g.w <= 0) fail(ErrorKind::Shape, input_shape + " must be positive");
  if (g.c > lim.max_dim || g.h > lim.max_dim || g.w > lim.max_dim)
    fail(ErrorKind::Shape,
         input_shape + " has a dimension past " + limit_str("max_dim", lim.max_dim));
  if (g.h > lim.max_input_pixels / g.w)
    fail(ErrorKind::Shape,
         input_shape + " is past " + limit_str("max_input_pixels", lim.max_input_pixels));
  if (g.layers.empty()) fail(ErrorKind::Graph, "the graph has no layers");
  if (static_cast<int64_t>(g.layers.size()) > lim.max_layers)
    fail(ErrorKind::Graph, "the graph has " + std::to_string(g.layers.size()) + " layers, past " +
                               limit_str("max_layers", lim.max_layers));
  std::map<std::string, size_t> idx;
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const auto& name = g.layers[i].name;
    if (name.empty()) fail(ErrorKind::Graph, "layer #" + std::to_string(i) + " has no name");
    if (name.find('/') != std::string::npos)
      fail(ErrorKind::Graph, "layer '" + name + "': names must not contain '/'");
    if (name == g.input_name)
      fail(ErrorKind::Graph, "layer '" + name + "' has the graph input's name");
    if (!idx.emplace(name, i).second) fail(ErrorKind::Graph, "duplicate layer name '" + name + "'");
    if (g.layers[i].inputs.empty()) fail(ErrorKind::Graph, "layer '" + name + "' has no inputs");
  }
  for (const auto& kv : g.aliases) {
    const std::string& alias = kv.first;
    const std::string at = "layer '" + kv.second + "': alias '" + alias + "'";
    if (!idx.count(kv.second)) fail(ErrorKind::Graph, "alias '" + alias + "' names no layer");
    if (alias.empty()) fail(ErrorKind::Graph, "layer '" + kv.second + "': an alias is empty");
    if (alias.find('/') != std::string::npos)
      fail(ErrorKind::Graph, at + ": names must not contain '/'");
    if (alias == g.input_name) fail(ErrorKind::Graph, at + " is the graph input's name");
    if (idx.count(alias)) fail(ErrorKind::Graph, at + " is the name of a layer");
  }
  std::vector<size_t> order = topo_order(g, idx);

  m.input_name = g.input_name;
  m.input = Shape::nchw(1, g.c, g.h, g.w);
  m.shapes.push_back(m.input);
  m.consumers.emplace_back();
  std::vector<Rf> rf{Rf{}};
  // Every layer's output for one image, summed: what a forward keeping all of them holds.
  int64_t activation_bytes = m.input.numel() * int64_t(sizeof(float));
  for (size_t pos = 0; pos < order.size(); ++pos) {
    LayerSpec& spec = g.layers[order[pos]];
    m.by_name[spec.name] = static_cast<int>(pos);
    std::vector<int> ids;
    std::vector<Shape> in_shapes;
    for (const auto& in : spec.inputs) {
      int id = in == g.input_name ? 0 : m.by_name.at(in) + 1;
      ids.push_back(id);
      in_shapes.push_back(m.shapes[id]);
      m.consumers[id].push_back(static_cast<int>(pos));
    }
    auto layer = make_layer(spec);
    spec.params.clear();  // the layer holds them now (and may keep only a packed copy)
    Shape out = layer->infer(in_shapes);
    if (!output_in_range(out))
      fail(ErrorKind::Shape, "layer '" + spec.name + "' (" + spec.kind + "): output shape " +
                                 out.str() + " is out of range (each size positive, 2^31 values " +
                                 "at most)");
    activation_bytes += out.numel() * int64_t(sizeof(float));
    if (activation_bytes > lim.max_tensor_bytes)
      fail(ErrorKind::Shape, "layer '" + spec.name + "' (" + spec.kind + "): output shape " +
                                 out.str() + " brings the activations of one image past " +
                                 limit_str("max_tensor_bytes", lim.max_tensor_bytes));

    // Receptive field: the union over inputs, stepped through this layer's window.
    RfStep s = layer->rf();
    Rf u = rf[ids[0]];
    for (int id : ids) {
      const Rf& o = rf[id];
      int64_t end_h = std::max(u.start_h + u.size_h, o.start_h + o.size_h);
      int64_t end_w = std::max(u.start_w + u.size_w, o.start_w + o.size_w);
      u.start_h = std::min(u.start_h, o.start_h);
      u.start_w = std::min(u.start_w, o.start_w);
      u.size_h = end_h - u.start_h;
      u.size_w = end_w - u.start_w;
      u.stride_h = std::max(u.stride_h, o.stride_h);
      u.stride_w = std::max(u.stride_w, o.stride_w);
    }
    Rf r;
    // An upsampling step (RfStep::up) divides the stride: a bound on the field when the input's
    // stride is a multiple of `up` (a decoder after an encoder), else the whole image.
    if (s.global || u.stride_h % s.up_h != 0 || u.stride_w % s.up_w != 0) {
      r = {g.h, g.w, g.h, g.w, 0, 0};
    } else {
      // The spread-out input's positions are u.stride / up image pixels apart (up 1: u.stride).
      const int64_t th = u.stride_h / s.up_h, tw = u.stride_w / s.up_w;
      r.stride_h = th * s.stride_h;
      r.stride_w = tw * s.stride_w;
      r.size_h = u.size_h + (s.size_h - 1) * th;
      r.size_w = u.size_w + (s.size_w - 1) * tw;
      r.start_h = u.start_h - s.pad_h * th;
      r.start_w = u.start_w - s.pad_w * tw;
    }
    rf.push_back(r);

    LayerInfo li;
    li.name = spec.name;
    li.kind = spec.kind;
    li.inputs = spec.inputs;
    li.shape = out;
    li.rf_size_h = r.size_h;
    li.rf_size_w = r.size_w;
    li.rf_stride_h = r.stride_h;
    li.rf_stride_w = r.stride_w;
    li.rf_start_h = r.start_h;
    li.rf_start_w = r.start_w;
    li.params = layer->param_count();
    li.rule = layer->rule_line();
    m.info.push_back(li);
    m.shapes.push_back(out);
    m.consumers.emplace_back();
    m.in_ids.push_back(ids);
    m.layers.push_back(std::move(layer));
  }
  // Speed caches may use a quarter of the parameters' memory or kCacheFloor, whichever is more
  // (ZFNet: its conv3-5 filters transformed for F(4x4), 50 of 249 MB). The floor lets a small
  // model keep the filters of its 13x13 layers, where transforming them every call cost as much
  // as their GEMMs: YOLOv3-tiny (35 MB of weights) keeps conv_10, conv_12 and conv_14's (117 MB;
  // conv_12 alone went from 16.1 to 8.6 ms on one thread, bench/README.md). What qualifies is a
  // 13x13/14x14-class map under F(4x4) (winograd.cpp: kCacheShare); U is 4x those weights.
  constexpr int64_t kCacheFloor = int64_t(128) << 20;
  int64_t params = 0;
  for (const LayerInfo& li : m.info) params += li.params;
  auto budget = std::make_shared<std::atomic<int64_t>>(
      std::max(params * int64_t(sizeof(float)) / 4, kCacheFloor));
  for (auto& layer : m.layers) layer->share_cache_budget(budget);
  for (const auto& kv : g.aliases) m.by_name[kv.first] = m.by_name.at(kv.second);
  m.outputs = g.outputs.empty() ? std::vector<std::string>{g.layers.back().name} : g.outputs;
  for (const auto& o : m.outputs) m.output_ids.push_back(layer_index(o) + 1);
}

Net::~Net() = default;

int64_t Net::cache_bytes() const {
  int64_t sum = 0;
  for (const auto& layer : impl_->layers) sum += layer->cache_bytes();
  return sum;
}

const std::vector<LayerInfo>& Net::info() const { return impl_->info; }
const std::vector<std::string>& Net::outputs() const { return impl_->outputs; }
std::vector<std::pair<std::string, Tensor>> Net::parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& l : impl_->layers)
    for (const auto& kv : l->spec().params)
      out.emplace_back(l->name() + "/" + kv.first, l->parameter(kv.first));
  return out;
}
int64_t Net::num_layers() const { return static_cast<int64_t>(impl_->layers.size()); }

int Net::layer_index(const std::string& name) const {
  auto it = impl_->by_name.find(name);
  if (it == impl_->by_name.end())
    fail(ErrorKind::NotFound, unknown_layer(name, impl_->by_name, impl_->info));
  return it->second;
}

}  // namespace pydeconv
