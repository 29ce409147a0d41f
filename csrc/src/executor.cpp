// The forward executor: runs the layers a target depends on, records what projections need.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "net_impl.hpp"

namespace pydeconv {
namespace {

// Layers [begin, end) of a forward pass, run `chunk` samples at a time (all of a layer's chunks
// run before the next layer's unless chunk < the batch).
struct Run {
  size_t begin, end;
  int64_t chunk;
};

// Kinds whose forward computes each sample alone, with the same operations whatever else the
// batch holds (tests/test_batch.py: a batch gives the bits of its samples run one at a time), so
// a run may cut them into chunks of samples.
bool per_sample_kind(const std::string& kind) {
  static const char* const kinds[] = {
      "conv2d",  "relu", "max_pool2d", "avg_pool2d",  "lrn",      "batch_norm",
      "affine",  "add",  "concat",     "leaky_relu",  "prelu",    "clip",
      "sigmoid", "tanh", "silu",       "hardsigmoid", "hardswish"};
  for (const char* k : kinds)
    if (kind == k) return true;
  return false;
}

// A layer whose output holds at least this much per sample is chunked in a batch; a chunk holds
// as many samples as keep the run's largest output within kChunkBytes (a quarter of a 32 MiB L3:
// what the layer after it can still find in the cache).
constexpr int64_t kChunkMinBytes = int64_t(2) << 20;
constexpr int64_t kChunkBytes = int64_t(8) << 20;

// A sub-batch view: samples [n0, n0 + k) of t, sharing its storage.
template <typename T>
TensorT<T> samples(const TensorT<T>& t, int64_t n0, int64_t k) {
  if (t.empty()) return TensorT<T>();
  T* at = const_cast<T*>(t.data()) + n0 * t.shape().sample();
  return TensorT<T>(t.shape().with_n(k), std::shared_ptr<T>(t.storage(), at));
}

}  // namespace

const Tensor* Trace::activation(int id) const {
  if (id < 0 || id >= static_cast<int>(acts_.size()) || acts_[id].empty()) return nullptr;
  return &acts_[id];
}
const IndexTensor* Trace::switches(int id) const {
  if (id < 0 || id >= static_cast<int>(switches_.size()) || switches_[id].empty()) return nullptr;
  return &switches_[id];
}
bool Trace::ran(int id) const { return id >= 0 && id < static_cast<int>(ran_.size()) && ran_[id]; }
const TensorT<uint8_t>* Trace::mask(int id) const {
  if (id < 0 || id >= static_cast<int>(masks_.size()) || masks_[id].empty()) return nullptr;
  return &masks_[id];
}

Trace Net::forward(const Ctx& ctx, const Tensor& x, const std::string& upto, Keep keep,
                   const std::vector<std::string>& also_keep) const {
  const Impl& m = *impl_;
  const Shape& xs = x.shape();
  if (xs.rank != 4 || !xs.same_chw(m.input) || xs.n <= 0)
    fail(ErrorKind::Shape, "input '" + m.input_name + "': expected shape (N, " +
                               std::to_string(m.input.c) + ", " + std::to_string(m.input.h) + ", " +
                               std::to_string(m.input.w) + "), got " + xs.str());
  const size_t nt = m.shapes.size();
  std::vector<bool> need(nt, false);
  std::vector<int> targets;
  if (upto.empty())
    targets = m.output_ids;
  else
    targets = {layer_index(upto) + 1};
  for (int t : targets) {
    auto a = m.ancestors(t);
    for (size_t i = 0; i < nt; ++i) need[i] = need[i] || a[i];
  }

  // What outlives the pass under Keep::Minimal.
  std::vector<bool> keep_act(nt, keep == Keep::All);
  std::vector<int> uses(nt, 0);
  for (int t : targets) keep_act[t] = true;
  for (const auto& name : also_keep) keep_act[layer_index(name) + 1] = true;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    if (!need[i + 1]) continue;
    const Needs& nd = m.layers[i]->needs();
    if (nd.input)
      for (int j : m.in_ids[i]) keep_act[j] = true;
    if (nd.output) keep_act[i + 1] = true;
    for (int j : m.in_ids[i]) ++uses[j];
  }

  // Let the pool keep what this pass allocates (an upper bound: every output, switch and mask
  // as if none were freed or written in place, plus the input's copy), so that batches larger
  // than the pool's initial cap reuse their blocks call after call.
  {
    std::size_t bytes = static_cast<std::size_t>(xs.numel()) * sizeof(float);
    for (size_t i = 0; i < m.layers.size(); ++i) {
      if (!need[i + 1]) continue;
      const std::size_t n = static_cast<std::size_t>(m.shapes[i + 1].with_n(xs.n).numel());
      const Needs& nd = m.layers[i]->needs();
      bytes += n * (sizeof(float) + (nd.switches ? sizeof(int32_t) : 0) + (nd.mask ? 1 : 0));
    }
    m.pool.raise_cap(bytes);
  }

  Trace t;
  t.net_ = this;
  t.batch_ = xs.n;
  t.minimal_ = keep == Keep::Minimal;
  t.acts_.resize(nt);
  t.switches_.resize(nt);
  t.masks_.resize(nt);
  t.ran_ = need;
  t.acts_[0] = x;
  // Under Keep::Minimal, once layer i has run: drop its inputs it was the last reader of, and
  // its own output if nothing reads or keeps it. The reader counts drop at once; the tensors
  // themselves are dropped (`flush`) once the run of layers holding i has run on every chunk.
  std::vector<int> dropped;
  auto release = [&](size_t i, int id) {
    if (keep != Keep::Minimal) return;
    for (int j : m.in_ids[i])
      if (--uses[j] == 0 && !keep_act[j]) dropped.push_back(j);
    if (uses[id] == 0 && !keep_act[id]) dropped.push_back(id);
  };
  auto flush = [&] {
    for (int j : dropped) t.acts_[j] = Tensor();
    dropped.clear();
  };
  // Layers run in order, in runs: a run of large-map layers (chunkable) runs a few samples at a
  // time through all its layers, so that each layer reads its input from the cache the layer
  // before left it in (a batch-8 VGG16's first blocks otherwise stream 8 x 15 MB per layer
  // through memory); every other layer is a run of its own over the whole batch.
  std::vector<Run> runs;
  {
    const size_t nl = m.layers.size();
    auto bytes = [&](size_t k) { return m.shapes[k + 1].sample() * int64_t(sizeof(float)); };
    auto big = [&](size_t k) {
      return need[k + 1] && m.shapes[k + 1].rank == 4 && per_sample_kind(m.layers[k]->kind()) &&
             bytes(k) >= kChunkMinBytes;
    };
    for (size_t i = 0; i < nl;) {
      if (xs.n == 1 || !big(i)) {
        runs.push_back({i, i + 1, xs.n});
        ++i;
        continue;
      }
      size_t j = i;
      int64_t widest = 0;
      for (; j < nl && (big(j) || !need[j + 1]); ++j)
        if (need[j + 1]) widest = std::max(widest, bytes(j));
      runs.push_back({i, j, std::clamp<int64_t>(kChunkBytes / widest, 1, xs.n)});
      i = j;
    }
  }
  // The layers of a run on samples [n0, n0 + k): views of the trace's tensors, or the tensors
  // themselves for the whole batch.
  std::vector<int> fused_into(m.layers.size(), -1);
  auto run_steps = [&](const std::vector<size_t>& steps, int64_t chunk) {
    std::vector<double> ms(steps.size(), 0.0);
    const bool whole = chunk >= xs.n;
    for (int64_t n0 = 0; n0 < xs.n; n0 += chunk) {
      const int64_t k = std::min(chunk, xs.n - n0);
      for (size_t s = 0; s < steps.size(); ++s) {
        const size_t i = steps[s];
        const int id = static_cast<int>(i) + 1, relu = fused_into[i];
        const Layer& layer = *m.layers[i];
        std::vector<Tensor> ins;
        Tensor out, relu_out;
        IndexTensor sw;
        TensorT<uint8_t> mask, relu_mask;
        ForwardArgs a;
        if (whole) {
          for (int j : m.in_ids[i]) a.in.push_back(&t.acts_[j]);
          a.out = &t.acts_[id];
          if (!t.switches_[id].empty()) a.switches = &t.switches_[id];
          if (!t.masks_[id].empty()) a.mask = &t.masks_[id];
          if (relu >= 0) {
            a.relu.out = &t.acts_[relu + 1];
            if (!t.masks_[relu + 1].empty()) a.relu.mask = &t.masks_[relu + 1];
          }
        } else {
          ins.reserve(m.in_ids[i].size());
          for (int j : m.in_ids[i]) ins.push_back(samples(t.acts_[j], n0, k));
          for (const Tensor& in : ins) a.in.push_back(&in);
          out = samples(t.acts_[id], n0, k);
          a.out = &out;
          sw = samples(t.switches_[id], n0, k);
          if (!sw.empty()) a.switches = &sw;
          mask = samples(t.masks_[id], n0, k);
          if (!mask.empty()) a.mask = &mask;
          if (relu >= 0) {
            relu_out = samples(t.acts_[relu + 1], n0, k);
            a.relu.out = &relu_out;
            relu_mask = samples(t.masks_[relu + 1], n0, k);
            if (!relu_mask.empty()) a.relu.mask = &relu_mask;
          }
        }
        if (whole) {
          LayerTimer timer("forward", layer);
          layer.forward(ctx, a);
          continue;
        }
        const auto t0 = std::chrono::steady_clock::now();
        layer.forward(ctx, a);
        ms[s] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                     .count();
      }
    }
    if (!whole && LayerTimer::enabled())  // one line per layer, as LayerTimer prints it
      for (size_t s = 0; s < steps.size(); ++s) {
        const Layer& layer = *m.layers[steps[s]];
        std::fprintf(stderr, "pydeconv %s %-12s %-40s %9.3f ms\n", "forward", layer.kind().c_str(),
                     layer.name().c_str(), ms[s]);
      }
  };
  // ReLU layers whose output (and mask) the conv before them already wrote (fused).
  std::vector<bool> fused(m.layers.size(), false);
  std::vector<size_t> steps;  // the layers of the current run that run (not fused)
  for (const Run& run : runs) {
    steps.clear();
    for (size_t i = run.begin; i < run.end; ++i) {
      const int id = static_cast<int>(i) + 1;
      if (!need[id]) continue;
      const Layer& layer = *m.layers[i];
      if (fused[i]) {
        release(i, id);
        continue;
      }
      const Shape os = m.shapes[id].with_n(xs.n);
      Tensor out;
      if (keep == Keep::Minimal && layer.caps().forward_in_place && m.in_ids[i].size() == 1) {
        // Write over the input when this layer is its last reader, nothing keeps it, it is not
        // the caller's array and no other tensor shares its storage (a flatten view, say).
        const int j = m.in_ids[i][0];
        Tensor& src = t.acts_[j];
        if (j != 0 && uses[j] == 1 && !keep_act[j] && src.shape() == os &&
            src.storage().use_count() == 1)
          out = src;
      }
      if (out.data() == nullptr) out = Tensor(os, m.pool, keep == Keep::Minimal && !keep_act[id]);
      const Needs& nd = layer.needs();
      if (nd.switches) t.switches_[id] = IndexTensor(out.shape(), m.pool);
      if (nd.mask && keep == Keep::Minimal) t.masks_[id] = TensorT<uint8_t>(out.shape(), m.pool);
      // A ReLU reading this layer's output is computed in the same pass when the layer can
      // (conv): into this output's own buffer when nothing else reads or keeps the pre-ReLU
      // values.
      int relu = -1;
      if (layer.caps().fuses_relu)
        for (int c : m.consumers[id])
          if (need[c + 1] && m.layers[c]->caps().fusable_relu && m.in_ids[c].size() == 1) {
            relu = c;
            break;
          }
      if (relu >= 0) {
        const int rid = relu + 1;
        if (keep == Keep::Minimal && uses[id] == 1 && !keep_act[id])
          t.acts_[rid] = out;
        else
          t.acts_[rid] = Tensor(os, m.pool, keep == Keep::Minimal && !keep_act[rid]);
        if (m.layers[relu]->needs().mask && keep == Keep::Minimal)
          t.masks_[rid] = TensorT<uint8_t>(os, m.pool);
        fused[static_cast<size_t>(relu)] = true;
      }
      t.acts_[id] = std::move(out);
      fused_into[i] = relu;
      steps.push_back(i);
      release(i, id);
    }
    run_steps(steps, run.chunk);
    flush();
  }
#if defined(__GLIBC__)
  // Keep::Minimal is the memory-saving mode: hand the freed activations back to the OS instead of
  // leaving them in the heap for the process's lifetime.
  if (keep == Keep::Minimal) malloc_trim(0);
#endif
  return t;
}

const Tensor& Net::activation(const Trace& t, const std::string& layer) const {
  int id = layer == impl_->input_name ? 0 : layer_index(layer) + 1;
  const Tensor* a = t.activation(id);
  if (!a)
    fail(ErrorKind::Value, "layer '" + layer + "': its output is not in this trace (" +
                               (t.minimal() ? "forward with keep='all' to keep every layer's output"
                                            : "the forward pass stopped before it (upto)") +
                               ")");
  return *a;
}

Tensor Net::input_buffer(const Shape& s) const { return Tensor(s, impl_->pool); }

const IndexTensor& Net::switches(const Trace& t, const std::string& layer) const {
  int i = layer_index(layer);
  if (!impl_->layers[i]->needs().switches)
    fail(ErrorKind::Value, "layer '" + layer + "' is a " + impl_->layers[i]->kind() +
                               " layer; only max_pool2d layers record switches");
  const IndexTensor* s = t.switches(i + 1);
  if (!s) fail(ErrorKind::Value, "layer '" + layer + "' did not run in this trace (upto)");
  return *s;
}

}  // namespace pydeconv
