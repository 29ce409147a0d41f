// Internal state of a Net, shared by graph building, the forward executor and projection.
#pragma once
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "buffer_pool.hpp"
#include "layers/layer.hpp"
#include "pydeconv/net.hpp"
#include "pydeconv/settings.hpp"

namespace pydeconv {

// PYDECONV_PROFILE=1 prints each layer's forward/backward time to stderr (a diagnosis aid).
class LayerTimer {
 public:
  LayerTimer(const char* phase, const Layer& l) : phase_(phase), layer_(l) {
    if (enabled()) t0_ = std::chrono::steady_clock::now();
  }
  ~LayerTimer() {
    if (!enabled()) return;
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    std::fprintf(stderr, "pydeconv %s %-12s %-40s %9.3f ms\n", phase_, layer_.kind().c_str(),
                 layer_.name().c_str(), ms);
  }
  static bool enabled() { return profile_layers(); }

 private:
  const char* phase_;
  const Layer& layer_;
  std::chrono::steady_clock::time_point t0_;
};

// Layers are stored in execution order: layer i produces tensor id i + 1; id 0 is the input.
struct Net::Impl {
  std::string input_name;
  Shape input;  // batch 1
  std::vector<std::unique_ptr<Layer>> layers;
  std::vector<std::vector<int>> in_ids;     // per layer: input tensor ids
  std::vector<Shape> shapes;                // per tensor id, batch 1
  std::vector<std::vector<int>> consumers;  // per tensor id: layer indices reading it
  std::vector<LayerInfo> info;
  std::map<std::string, int> by_name;  // layer name or alias -> layer index
  std::vector<std::string> outputs;
  std::vector<int> output_ids;
  // Activations, masks and switches of forward passes, and the projections' gradient buffers,
  // come from here and go back when freed, so repeated passes reuse the same memory (a forward's
  // idle activations serve the next projection's gradients). Idle blocks beyond 256 MB go back to
  // the system.
  mutable BufferPool pool{std::size_t(256) << 20};

  // Tensor ids that `target` depends on (itself included), as a mask over tensor ids.
  std::vector<bool> ancestors(int target) const;
  int tensor_of(const std::string& layer) const { return by_name.at(layer) + 1; }
};

}  // namespace pydeconv
