// The one table of layer kinds: name -> factory, and how each sends the signal back down.
#include "layers.hpp"

namespace pydeconv {

const std::vector<LayerKind>& layer_kinds() {
  static const std::vector<LayerKind> kinds = {
      {"conv2d", make_conv2d, "transposed convolution with the same filters; bias unused"},
      {"relu", make_relu,
       "deconvnet relu(g); guided relu(g)*[x>0]; backprop g*[x>0]"},
      {"max_pool2d", make_max_pool2d,
       "unpool through the switches; overlapping windows sum"},
      {"avg_pool2d", make_avg_pool2d, "spread evenly over each window"},
      {"global_avg_pool", make_global_avg_pool, "spread evenly over the plane"},
      {"lrn", make_lrn, "LRN Jacobian at the forward input"},
      {"batch_norm", make_batch_norm, "multiply by scale/sqrt(var+eps); shift unused"},
      {"linear", make_linear, "multiply by W^T; bias unused"},
      {"flatten", make_flatten, "reshape back"},
      {"dropout", make_dropout, "identity"},
      {"softmax", make_softmax, "softmax Jacobian at the forward output"},
      {"add", make_add, "copy to every input"},
      {"concat", make_concat, "split by channels"},
  };
  return kinds;
}

std::unique_ptr<Layer> make_layer(const LayerSpec& spec) {
  for (const auto& k : layer_kinds())
    if (spec.kind == k.name) return k.make(spec);
  std::string known;
  for (const auto& k : layer_kinds()) known += (known.empty() ? "" : ", ") + std::string(k.name);
  fail(ErrorKind::Graph,
       "layer '" + spec.name + "': unknown kind '" + spec.kind + "' (known: " + known + ")");
}

}  // namespace pydeconv
