// pydeconv: model files (.npz with a JSON graph, docs/FORMAT.md). This is the one definition of
// the format: the Python package loads and builds every model through these two functions.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pydeconv/image.hpp"
#include "pydeconv/net.hpp"

namespace pydeconv {

struct Model {
  std::unique_ptr<Net> net;
  std::string graph_json;           // the JSON graph text as stored
  Preprocess preprocess;            // how an image becomes the input, every default filled in
  std::vector<std::string> labels;  // class names, may be empty
};

// Loads and validates a model file completely; throws Error naming the file, layer and field.
Model load_model(const std::string& path);

// The model a JSON graph text describes, with its parameters ("LAYER/PARAM", float32), validated
// exactly as load_model validates a file: every declared parameter stored with exactly the
// declared shape, no stored array left unused, no unknown field. `label` (a file name, or empty)
// starts every error message.
Model model_from_json(const std::string& graph_json, std::map<std::string, Tensor> params,
                      const std::string& label = "");

}  // namespace pydeconv
