// Internal state of a Net, shared by graph building, the forward executor and projection.
#pragma once
#include <map>

#include "pydeconv/net.hpp"

namespace pydeconv {

// Layers are stored in execution order: layer i produces tensor id i + 1; id 0 is the input.
struct Net::Impl {
  std::string input_name;
  Shape input;  // batch 1
  std::vector<std::unique_ptr<Layer>> layers;
  std::vector<std::vector<int>> in_ids;      // per layer: input tensor ids
  std::vector<Shape> shapes;                 // per tensor id, batch 1
  std::vector<std::vector<int>> consumers;   // per tensor id: layer indices reading it
  std::vector<LayerInfo> info;
  std::map<std::string, int> by_name;        // layer name -> layer index
  std::vector<std::string> outputs;
  std::vector<int> output_ids;

  // Tensor ids that `target` depends on (itself included), as a mask over tensor ids.
  std::vector<bool> ancestors(int target) const;
  int tensor_of(const std::string& layer) const { return by_name.at(layer) + 1; }
};

}  // namespace pydeconv
