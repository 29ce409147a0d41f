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
std::unique_ptr<Layer> make_mul(const LayerSpec& s);
std::unique_ptr<Layer> make_affine(const LayerSpec& s);
std::unique_ptr<Layer> make_upsample(const LayerSpec& s);
std::unique_ptr<Layer> make_slice(const LayerSpec& s);
std::unique_ptr<Layer> make_pad(const LayerSpec& s);
std::unique_ptr<Layer> make_channel_shuffle(const LayerSpec& s);
std::unique_ptr<Layer> make_leaky_relu(const LayerSpec& s);
std::unique_ptr<Layer> make_prelu(const LayerSpec& s);
std::unique_ptr<Layer> make_clip(const LayerSpec& s);
std::unique_ptr<Layer> make_sigmoid(const LayerSpec& s);
std::unique_ptr<Layer> make_tanh(const LayerSpec& s);
std::unique_ptr<Layer> make_silu(const LayerSpec& s);
std::unique_ptr<Layer> make_hardsigmoid(const LayerSpec& s);
std::unique_ptr<Layer> make_hardswish(const LayerSpec& s);
std::unique_ptr<Layer> make_mish(const LayerSpec& s);
std::unique_ptr<Layer> make_elu(const LayerSpec& s);
std::unique_ptr<Layer> make_gelu(const LayerSpec& s);
std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s);
std::unique_ptr<Layer> make_layer_norm(const LayerSpec& s);
std::unique_ptr<Layer> make_reshape(const LayerSpec& s);
std::unique_ptr<Layer> make_transpose(const LayerSpec& s);

// The receptive-field step of layers whose every output depends on every input position.
inline RfStep global_rf() {
  RfStep s;
  s.global = true;
  return s;
}

}  // namespace pydeconv
