// The forward executor: runs the layers a target depends on, records what projections need.
#include <algorithm>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "net_impl.hpp"

namespace pydeconv {

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
  // its own output if nothing reads or keeps it.
  auto release = [&](size_t i, int id) {
    if (keep != Keep::Minimal) return;
    for (int j : m.in_ids[i])
      if (--uses[j] == 0 && !keep_act[j]) t.acts_[j] = Tensor();
    if (uses[id] == 0 && !keep_act[id]) t.acts_[id] = Tensor();
  };
  // ReLU layers whose output (and mask) the conv before them already wrote (fused).
  std::vector<bool> fused(m.layers.size(), false);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const int id = static_cast<int>(i) + 1;
    if (!need[id]) continue;
    const Layer& layer = *m.layers[i];
    if (fused[i]) {
      release(i, id);
      continue;
    }
    ForwardArgs a;
    for (int j : m.in_ids[i]) a.in.push_back(&t.acts_[j]);
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
    a.out = &out;
    const Needs& nd = layer.needs();
    if (nd.switches) {
      t.switches_[id] = IndexTensor(out.shape(), m.pool);
      a.switches = &t.switches_[id];
    }
    if (nd.mask && keep == Keep::Minimal) {
      t.masks_[id] = TensorT<uint8_t>(out.shape(), m.pool);
      a.mask = &t.masks_[id];
    }
    // A ReLU reading this layer's output is computed in the same pass when the layer can (conv):
    // into this output's own buffer when nothing else reads or keeps the pre-ReLU values.
    int relu = -1;
    if (layer.caps().fuses_relu)
      for (int c : m.consumers[id])
        if (need[c + 1] && m.layers[c]->caps().fusable_relu && m.in_ids[c].size() == 1) {
          relu = c;
          break;
        }
    Tensor relu_out;
    if (relu >= 0) {
      const int rid = relu + 1;
      if (keep == Keep::Minimal && uses[id] == 1 && !keep_act[id])
        relu_out = out;
      else
        relu_out = Tensor(os, m.pool, keep == Keep::Minimal && !keep_act[rid]);
      a.relu.out = &relu_out;
      if (m.layers[relu]->needs().mask && keep == Keep::Minimal) {
        t.masks_[rid] = TensorT<uint8_t>(os, m.pool);
        a.relu.mask = &t.masks_[rid];
      }
    }
    {
      LayerTimer timer("forward", layer);
      layer.forward(ctx, a);
    }
    t.acts_[id] = std::move(out);
    if (relu >= 0) {
      t.acts_[relu + 1] = std::move(relu_out);
      fused[static_cast<size_t>(relu)] = true;
    }
    release(i, id);
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
