// Projection: start signals, and the walk back down the graph to the input pixels.
#include <algorithm>
#include <cstring>

#include "net_impl.hpp"

namespace pydeconv {
namespace {

// Per sample: the bounding box of the non-zero values over its channels.
Regions nonzero_regions(const Tensor& t) {
  const Shape& s = t.shape();
  Regions out;
  for (int64_t b = 0; b < s.n; ++b) {
    Region r{s.h, 0, s.w, 0};
    for (int64_t c = 0; c < s.c; ++c) {
      const float* v = t.plane(b, c);
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x)
          if (v[y * s.w + x] != 0.f) {
            r.y0 = std::min(r.y0, y);
            r.y1 = std::max(r.y1, y + 1);
            r.x0 = std::min(r.x0, x);
            r.x1 = std::max(r.x1, x + 1);
          }
    }
    out.push_back(r.empty() ? Region{0, 0, 0, 0} : r);
  }
  return out;
}

// Zeroes the part of sample b's planes inside `grown` but outside `old` (old inside grown, or
// empty): what a partially cleared gradient must add before a new writer accumulates there.
void clear_growth(Tensor& g, int64_t b, const Region& old, const Region& grown) {
  const Shape& s = g.shape();
  const int64_t w = s.rank == 4 ? s.w : 1;
  for (int64_t c = 0; c < s.c; ++c) {
    float* plane = g.plane(b, c);
    for (int64_t y = grown.y0; y < grown.y1; ++y) {
      float* row = plane + y * w;
      if (old.empty() || y < old.y0 || y >= old.y1) {
        std::fill(row + grown.x0, row + grown.x1, 0.0f);
      } else {
        std::fill(row + grown.x0, row + old.x0, 0.0f);
        std::fill(row + old.x1, row + grown.x1, 0.0f);
      }
    }
  }
}

// Zeroes sample b's planes outside `keep` (all of them when it is empty): a partially cleared
// gradient handed to the caller (a projection that stops at a layer) must be zero everywhere.
void clear_outside(Tensor& g, int64_t b, const Region& keep) {
  const Shape& s = g.shape();
  const int64_t h = s.rank == 4 ? s.h : 1, w = s.rank == 4 ? s.w : 1;
  for (int64_t c = 0; c < s.c; ++c) {
    float* plane = g.plane(b, c);
    for (int64_t y = 0; y < h; ++y) {
      float* row = plane + y * w;
      if (keep.empty() || y < keep.y0 || y >= keep.y1) {
        std::fill(row, row + w, 0.0f);
      } else {
        std::fill(row, row + keep.x0, 0.0f);
        std::fill(row + keep.x1, row + w, 0.0f);
      }
    }
  }
}

// The index into a plane of `s` where `at` puts the start signal, or -1 for the whole map.
int64_t chosen_index(const float* plane, const Shape& s, const At& at) {
  if (at.kind == At::Position) return at.y * s.w + at.x;
  if (at.kind == At::Map) return -1;
  int64_t pos = 0;  // the strongest activation; ties: the first, row-major
  for (int64_t i = 1; i < s.plane(); ++i)
    if (plane[i] > plane[pos]) pos = i;
  return pos;
}

// Where the start signal of one channel's map is non-zero: its chosen position (empty where the
// activation there is zero), or the whole map (pos < 0).
Region start_box(const float* plane, const Shape& s, int64_t pos) {
  if (pos < 0) return Region::full(s);
  if (plane[pos] == 0.f) return Region{0, 0, 0, 0};
  return {pos / s.w, pos / s.w + 1, pos % s.w, pos % s.w + 1};
}

Region unite(const Region& a, const Region& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return {std::min(a.y0, b.y0), std::max(a.y1, b.y1), std::min(a.x0, b.x0), std::max(a.x1, b.x1)};
}

}  // namespace

Tensor Net::start_signal(const Trace& t, const std::string& layer,
                         const std::vector<int64_t>& channels, const At& at) const {
  return make_start(t, layer, channels, at, nullptr);
}

std::vector<Position> Net::positions(const Trace& t, const std::string& layer,
                                     const std::vector<int64_t>& channels, const At& at) const {
  const Tensor& act = check_start_args(t, layer, channels, at);
  const Shape& s = act.shape();
  std::vector<Position> out;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c : channels) {
      const int64_t pos = chosen_index(act.plane(n, c), s, at);
      out.push_back(pos < 0 ? Position{} : Position{pos / s.w, pos % s.w});
    }
  return out;
}

Tensor Net::project(const Ctx& ctx, const Trace& t, const std::string& layer, const Tensor& start,
                    Rule rule, const std::string& to) const {
  const int stop = stop_tensor(layer, to);
  return project_regions(ctx, t, layer, start, nonzero_regions(start), rule, nullptr, stop);
}

int Net::stop_tensor(const std::string& layer, const std::string& to) const {
  const int target = layer_index(layer) + 1;
  if (to.empty()) return 0;
  const int stop = layer_index(to) + 1;
  if (stop == target) return stop;
  // project_regions' walk: a tensor is reached once a reader of it is.
  const Impl& m = *impl_;
  std::vector<bool> reached(m.shapes.size(), false);
  reached[static_cast<size_t>(target)] = true;
  for (int id = target; id > stop; --id) {
    if (!reached[static_cast<size_t>(id)]) continue;
    for (int j : m.in_ids[static_cast<size_t>(id - 1)]) reached[static_cast<size_t>(j)] = true;
  }
  if (stop > target || !reached[static_cast<size_t>(stop)])
    fail(ErrorKind::Graph,
         "a projection from layer '" + layer + "' does not pass layer '" + to + "' (" +
             (stop > target ? "it runs after '" + layer + "'"
                            : "no path from it leads to '" + layer + "'") +
             "); Net::rules / `pydeconv info --rules` lists the layers it passes");
  return stop;
}

Tensor Net::project_channels(const Ctx& ctx, const Trace& t, const std::string& layer,
                             const std::vector<int64_t>& channels, const At& at, Rule rule,
                             const ProjectOptions& opt) const {
  const Impl& m = *impl_;
  if (opt.max_memory <= 0)
    fail(ErrorKind::Range,
         "max_memory must be a positive number of bytes, got " + std::to_string(opt.max_memory));
  const Tensor& act = check_start_args(t, layer, channels, at);
  const int stop = stop_tensor(layer, opt.to);
  const int64_t k = static_cast<int64_t>(channels.size()), n = t.batch();
  // A start signal is zero but for one value per sample (or one map): cleared in full, a fresh
  // map's pages fault in on every call (255 faults, ~0.25 ms, for a conv3_3 unit of VGG16).
  const Layer& target = *m.layers[static_cast<size_t>(layer_index(layer))];
  // (Stopping at the start layer returns the start signal itself: it must be cleared in full.)
  const int target_id = layer_index(layer) + 1;
  const bool region_only =
      !ctx.reference && target.caps().backward_region_only && stop != target_id;
  // Channels per chunk: as many as the budget holds (every sample of a channel in one chunk).
  const int64_t per_channel = std::max<int64_t>(1, projection_bytes_per_sample(layer, opt.to)) * n;
  const int64_t chunk = std::clamp<int64_t>(opt.max_memory / per_channel, 1, k);
  if (chunk == k) {
    Regions regions;
    Tensor start = make_start(t, layer, channels, at, &regions, region_only);
    Tensor out = project_regions(ctx, t, layer, start, std::move(regions), rule, nullptr, stop);
    if (opt.progress) opt.progress(k, k);
    return out;
  }
  // The whole batch's regions at every tensor, from its start boxes alone (nothing allocated
  // at the layers' sizes), for the kernels to choose by: each chunk then computes the bits the
  // one batch would.
  const Shape& as = act.shape();
  std::vector<Regions> plan(m.shapes.size());
  plan[target_id].resize(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const float* plane = act.plane(i, channels[static_cast<size_t>(j)]);
      plan[target_id][static_cast<size_t>(i * k + j)] =
          start_box(plane, as, chosen_index(plane, as, at));
    }
  walk_regions(target_id, plan, stop);
  const Shape& result = m.shapes[static_cast<size_t>(stop)];  // the input's, or `to`'s output's
  const int64_t sample = result.sample();
  Tensor out(result.with_n(n * k));
  for (int64_t j0 = 0; j0 < k; j0 += chunk) {
    const int64_t j1 = std::min(k, j0 + chunk), kc = j1 - j0;
    const std::vector<int64_t> some(channels.begin() + j0, channels.begin() + j1);
    Regions regions;
    Tensor start = make_start(t, layer, some, at, &regions, region_only);
    const Tensor part =
        project_regions(ctx, t, layer, start, std::move(regions), rule, &plan, stop);
    for (int64_t i = 0; i < n; ++i)  // sample i * kc + j of the chunk is i * k + j0 + j
      std::memcpy(out.sample(i * k + j0), part.sample(i * kc),
                  static_cast<size_t>(kc * sample) * sizeof(float));
    if (opt.progress) opt.progress(j1, k);
  }
  return out;
}

void Net::walk_regions(int target, std::vector<Regions>& region, int stop) const {
  // project_regions' walk with regions alone: a tensor is reached once a reader of it is, and
  // grows by every reader's input_region; an in-place layer hands its input the same regions.
  const Impl& m = *impl_;
  const size_t ns = region[static_cast<size_t>(target)].size();
  std::vector<bool> reached(m.shapes.size(), false);
  reached[static_cast<size_t>(target)] = true;
  for (int id = target; id > stop; --id) {
    if (!reached[static_cast<size_t>(id)]) continue;
    const int li = id - 1;
    const Layer& L = *m.layers[static_cast<size_t>(li)];
    const auto& ins = m.in_ids[static_cast<size_t>(li)];
    const bool in_place = L.caps().backward_in_place && id != target && ins.size() == 1 &&
                          !reached[static_cast<size_t>(ins[0])];
    for (int j : ins) {
      if (!reached[static_cast<size_t>(j)]) {
        reached[static_cast<size_t>(j)] = true;
        region[static_cast<size_t>(j)] =
            in_place ? region[static_cast<size_t>(id)] : Regions(ns, Region{0, 0, 0, 0});
      }
      for (size_t b = 0; b < ns; ++b) {
        const Region& r = region[static_cast<size_t>(id)][b];
        if (r.empty()) continue;
        region[static_cast<size_t>(j)][b] = unite(
            region[static_cast<size_t>(j)][b], L.input_region(r, m.shapes[static_cast<size_t>(j)]));
      }
    }
  }
}

std::vector<LayerRule> Net::rules(const std::string& layer, Rule rule) const {
  // project_regions' walk: a layer is passed once a reader of its output is.
  const Impl& m = *impl_;
  const int target = layer_index(layer) + 1;
  std::vector<bool> reached(m.shapes.size(), false);
  reached[static_cast<size_t>(target)] = true;
  std::vector<LayerRule> out;
  for (int id = target; id >= 1; --id) {
    if (!reached[static_cast<size_t>(id)]) continue;
    const Layer& L = *m.layers[static_cast<size_t>(id - 1)];
    out.push_back({L.name(), L.kind(), L.rule_text(rule)});
    for (int j : m.in_ids[static_cast<size_t>(id - 1)]) reached[static_cast<size_t>(j)] = true;
  }
  return out;
}

int64_t Net::projection_bytes_per_sample(const std::string& layer, const std::string& to) const {
  // project_regions' walk with sizes alone: each tensor's gradient is allocated when its first
  // reader's backward runs (an in-place layer's input takes over its buffer) and freed once its
  // own layer's backward has run; a walk that stops at `to` ends holding `to`'s gradient.
  const Impl& m = *impl_;
  const int target = layer_index(layer) + 1;
  const int stop = stop_tensor(layer, to);
  std::vector<int64_t> held(m.shapes.size(), 0);
  std::vector<bool> reached(m.shapes.size(), false);
  auto bytes = [&](int j) {
    return m.shapes[static_cast<size_t>(j)].sample() * static_cast<int64_t>(sizeof(float));
  };
  held[static_cast<size_t>(target)] = bytes(target);
  reached[static_cast<size_t>(target)] = true;
  int64_t now = held[static_cast<size_t>(target)], peak = now;
  for (int id = target; id > stop; --id) {
    if (!reached[static_cast<size_t>(id)]) continue;
    const int li = id - 1;
    const Layer& L = *m.layers[static_cast<size_t>(li)];
    const auto& ins = m.in_ids[static_cast<size_t>(li)];
    const bool in_place = L.caps().backward_in_place && id != target && ins.size() == 1 &&
                          !reached[static_cast<size_t>(ins[0])];
    for (int j : ins) {
      if (reached[static_cast<size_t>(j)]) continue;
      reached[static_cast<size_t>(j)] = true;
      if (in_place) {
        held[static_cast<size_t>(j)] = held[static_cast<size_t>(id)];
        held[static_cast<size_t>(id)] = 0;
      } else {
        held[static_cast<size_t>(j)] = bytes(j);
        now += bytes(j);
      }
    }
    peak = std::max(peak, now);
    now -= held[static_cast<size_t>(id)];
    held[static_cast<size_t>(id)] = 0;
  }
  return peak;
}

const Tensor& Net::check_start_args(const Trace& t, const std::string& layer,
                                    const std::vector<int64_t>& channels, const At& at) const {
  if (t.net_ != this) fail(ErrorKind::Value, "the trace was made by another model");
  const Tensor& act = activation(t, layer);
  const Shape& s = act.shape();
  if (channels.empty()) fail(ErrorKind::Range, "layer '" + layer + "': no channel given");
  for (int64_t c : channels)
    if (c < 0 || c >= s.c)
      fail(ErrorKind::Range, "layer '" + layer + "': channel " + std::to_string(c) +
                                 " out of range (the layer has " + std::to_string(s.c) +
                                 " channels)");
  if (at.kind == At::Position && (at.y < 0 || at.y >= s.h || at.x < 0 || at.x >= s.w))
    fail(ErrorKind::Range, "layer '" + layer + "': position (" + std::to_string(at.y) + ", " +
                               std::to_string(at.x) + ") is outside its " + std::to_string(s.h) +
                               "x" + std::to_string(s.w) + " map");
  return act;
}

Tensor Net::make_start(const Trace& t, const std::string& layer,
                       const std::vector<int64_t>& channels, const At& at, Regions* regions,
                       bool region_only) const {
  const Tensor& act = check_start_args(t, layer, channels, at);
  const Shape& s = act.shape();
  const int64_t k = static_cast<int64_t>(channels.size());
  region_only = region_only && regions != nullptr;
  Tensor start =
      region_only ? Tensor(s.with_n(s.n * k), impl_->pool, true) : Tensor(s.with_n(s.n * k), 0.f);
  if (regions) regions->assign(static_cast<size_t>(s.n * k), Region{0, 0, 0, 0});
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t b = n * k + j;
      const float* src = act.plane(n, channels[j]);
      float* dst = start.plane(b, channels[j]);
      const int64_t pos = chosen_index(src, s, at);  // the one position kept, or -1: the map
      const Region r = start_box(src, s, pos);
      if (region_only) clear_growth(start, b, Region{0, 0, 0, 0}, r);  // every channel's box
      if (pos < 0)
        std::copy(src, src + s.plane(), dst);
      else if (!region_only || !r.empty())
        dst[pos] = src[pos];
      if (regions) (*regions)[static_cast<size_t>(b)] = r;
    }
  return start;
}

Tensor Net::project_regions(const Ctx& ctx, const Trace& t, const std::string& layer,
                            const Tensor& start, Regions regions, Rule rule,
                            const std::vector<Regions>* choose_by, int stop) const {
  const Impl& m = *impl_;
  if (t.net_ != this) fail(ErrorKind::Value, "the trace was made by another model");
  const int target = layer_index(layer) + 1;
  const Shape& ls = m.shapes[target];
  const Shape& ss = start.shape();
  if (!ss.same_chw(ls) || ss.n <= 0 || ss.n % t.batch() != 0)
    fail(ErrorKind::Shape, "layer '" + layer + "': the start signal must have shape " +
                               ls.with_n(t.batch()).str() + " (or K * " +
                               std::to_string(t.batch()) + " samples for K signals each), got " +
                               ss.str());
  const int64_t reps = ss.n / t.batch();
  if (!t.ran(target))
    fail(ErrorKind::Value, "layer '" + layer + "' did not run in this trace (upto)");
  if (stop == target) return start.clone();  // stopping where it starts: the start signal

  std::vector<Tensor> grad(m.shapes.size());
  std::vector<Regions> region(m.shapes.size(), Regions(static_cast<size_t>(ss.n)));
  // Gradient buffers come from the net's pool (the forward's idle activations, the previous
  // projection's gradients): no fresh pages to fault in. partial[j]: grad[j] is zero only inside
  // its regions, which is all its reader (layer j - 1, whose backward reads gout only there)
  // looks at; otherwise it is cleared in full.
  std::vector<bool> partial(m.shapes.size(), false);
  grad[target] = start;  // read-only on the way down: no copy
  region[target] = std::move(regions);
  for (int id = target; id > stop; --id) {
    if (grad[id].empty()) continue;
    const int li = id - 1;
    const Layer& L = *m.layers[li];
    BackwardArgs a;
    a.rule = rule;
    a.gout = &grad[id];
    a.region = region[id];
    a.reps = reps;
    if (choose_by != nullptr) a.choose_by = &(*choose_by)[static_cast<size_t>(id)];
    a.out = t.activation(id);
    a.mask = t.mask(id);
    a.switches = t.switches(id);
    const Needs& nd = L.needs();
    if (nd.switches && !a.switches)
      fail(ErrorKind::Value, "layer '" + L.name() + "': its switches are not in this trace");
    if (nd.output && !a.out)
      fail(ErrorKind::Value, "layer '" + L.name() + "': its output is not in this trace");
    // An element-wise layer whose input has no signal yet works in place on gout's buffer
    // (never on the caller's start signal).
    bool in_place = L.caps().backward_in_place && id != target && m.in_ids[li].size() == 1 &&
                    grad[m.in_ids[li][0]].empty();
    // -- head: a buffer that holds anything outside its regions (partial) is handed down only to
    // a tensor whose reader reads inside them alone (a slice or reshape before a sigmoid reads
    // all of it; the graph input is returned whole).
    if (in_place && partial[id]) {
      const int j = m.in_ids[li][0];
      in_place = j > 0 && m.layers[static_cast<size_t>(j - 1)]->caps().backward_region_only;
    }
    if (in_place) {
      const int j = m.in_ids[li][0];
      grad[j] = grad[id];
      partial[j] = partial[id];
      region[j] = region[id];  // the signal already there is the input's (ReLU: same region)
    }
    for (int j : m.in_ids[li]) {
      a.in.push_back(t.activation(j));
      if (nd.input && !t.activation(j))
        fail(ErrorKind::Value, "layer '" + L.name() + "': its input is not in this trace");
      if (grad[j].empty()) {
        grad[j] = Tensor(m.shapes[j].with_n(ss.n), m.pool, true);
        partial[j] = j > 0 && !ctx.reference && m.layers[j - 1]->caps().backward_region_only;
        // A fresh buffer that this layer alone writes, over all of its new regions: nothing to
        // clear first (stride-1 transposed convs, unpooling through tiling windows).
        a.overwrite = partial[j] && L.caps().backward_overwrites && m.in_ids[li].size() == 1 &&
                      m.consumers[static_cast<size_t>(j)].size() == 1;
        if (!partial[j]) grad[j].zero();
      }
      for (int64_t b = 0; b < ss.n; ++b) {
        const Region& r = region[id][b];
        if (r.empty()) continue;
        const Region grown = unite(region[j][b], L.input_region(r, m.shapes[j]));
        if (partial[j] && !a.overwrite) clear_growth(grad[j], b, region[j][b], grown);
        region[j][b] = grown;
      }
    }
    for (int j : m.in_ids[li]) a.gin.push_back(&grad[j]);
    bool any = false;
    for (const Region& r : region[id]) any = any || !r.empty();
    if (any) {
      LayerTimer timer("project", L);
      L.backward(ctx, a);
    }
    grad[id] = Tensor();  // free as we go
  }
  const Shape& result = m.shapes[static_cast<size_t>(stop)];
  if (grad[stop].empty()) return Tensor(result.with_n(ss.n), 0.f);
  // The input is never partial (it has no reader layer); a layer's output may be: cleared
  // outside its regions here, where nothing was written.
  if (partial[stop])
    for (int64_t b = 0; b < ss.n; ++b) clear_outside(grad[stop], b, region[stop][b]);
  return std::move(grad[stop]);
}

}  // namespace pydeconv
