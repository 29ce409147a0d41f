// pydeconv: model files (.npz with a JSON graph, docs/FORMAT.md) for C++ applications.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pydeconv/image.hpp"
#include "pydeconv/json.hpp"
#include "pydeconv/net.hpp"

namespace pydeconv {

struct Model {
  std::unique_ptr<Net> net;
  Json graph;                       // the JSON graph as stored
  Preprocess preprocess;            // how an image becomes the input
  std::vector<std::string> labels;  // class names, may be empty
};

// Loads and validates a model file completely; throws Error naming the file, layer and field.
Model load_model(const std::string& path);

// The GraphSpec a JSON graph describes, with its parameters taken from `params` ("LAYER/PARAM").
// Checks that every declared parameter is stored with exactly the declared shape, and that no
// stored array is left unused.
GraphSpec graph_from_json(const Json& graph, std::map<std::string, Tensor> params,
                          const std::string& label);
Preprocess preprocess_from_json(const Json& graph);

}  // namespace pydeconv
