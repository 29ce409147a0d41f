// Internal: the factory of every layer kind (one file each, named after the kind), listed once in
// registry.cpp.
#pragma once
#include "layers/layer.hpp"

namespace pydeconv {

std::unique_ptr<Layer> make_conv2d(const LayerSpec& s);
std::unique_ptr<Layer> make_relu(const LayerSpec& s);
std::unique_ptr<Layer> make_max_pool2d(const LayerSpec& s);
std::unique_ptr<Layer> make_avg_pool2d(const LayerSpec& s);
std::unique_ptr<Layer> make_global_avg_pool(const LayerSpec& s);
std::unique_ptr<Layer> make_lrn(const LayerSpec& s);
std::unique_ptr<Layer> make_batch_norm(const LayerSpec& s);
std::unique_ptr<Layer> make_linear(const LayerSpec& s);
std::unique_ptr<Layer> make_flatten(const LayerSpec& s);
std::unique_ptr<Layer> make_dropout(const LayerSpec& s);
std::unique_ptr<Layer> make_softmax(const LayerSpec& s);
std::unique_ptr<Layer> make_add(const LayerSpec& s);
std::unique_ptr<Layer> make_concat(const LayerSpec& s);
// -- issue 14: convt
std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s);
std::unique_ptr<Layer> make_layer_norm(const LayerSpec& s);

// The receptive-field step of layers whose every output depends on every input position.
inline RfStep global_rf() {
  RfStep s;
  s.global = true;
  return s;
}

}  // namespace pydeconv
