// pydeconv: resource limits on what a file may declare, checked before anything is allocated.
//
// A model file, an ONNX file or an image declares sizes (tensor shapes, pixel counts, nesting)
// long before it holds the bytes; the readers compare every declaration with these limits first,
// so a 80 KB file declaring a 1e9 x 32 x 32 input is refused in microseconds with the field and
// the limit named, instead of allocating gigabytes. The defaults are defined here, once: the
// Python package reads and sets the same values (pydeconv.Limits, pydeconv.set_limits), and
// docs/SECURITY.md lists them. The values are process-wide; readers take a copy per call.
#pragma once
#include <cstdint>
#include <string>

namespace pydeconv {

struct Limits {
  // Bytes of the tensors a model declares, summed: its parameters (from .npy headers and ONNX
  // dims) and, separately, every layer's activation for one image at batch 1. 4 GiB.
  int64_t max_tensor_bytes = int64_t(1) << 32;
  // Any one dimension of the input, of a parameter or of an ONNX tensor. 1,048,576.
  int64_t max_dim = int64_t(1) << 20;
  // Height x width of a model's input (and its preprocess size). 8192 x 8192.
  int64_t max_input_pixels = int64_t(1) << 26;
  // Width x height an image file declares, checked before it is decoded. ~134 million.
  int64_t max_image_pixels = int64_t(1) << 27;
  // Threads of one forward pass or projection.
  int64_t max_threads = 1024;
  // Nesting of the JSON graph (arrays and objects). At most kJsonDepthCap: the parser recurses.
  int64_t max_json_depth = 64;
  // Layers of a graph, nodes of an ONNX graph.
  int64_t max_layers = int64_t(1) << 16;
  // Members of a .npz archive.
  int64_t max_members = int64_t(1) << 18;
  // Bytes of the JSON graph text. 64 MiB.
  int64_t max_graph_bytes = int64_t(1) << 26;

  // The JSON parser recurses once per level: a larger depth could exhaust a thread's stack.
  static constexpr int64_t kJsonDepthCap = 1000;
};

// The limits in force (a copy; safe to call from any thread).
Limits limits();
// Replaces the limits for the whole process after checking them: every value positive and
// max_json_depth at most Limits::kJsonDepthCap; Error(Value) naming the field otherwise.
void set_limits(const Limits& l);

// "NAME = VALUE (pydeconv.Limits)": how messages name the limit a declaration exceeds.
std::string limit_str(const char* name, int64_t value);

}  // namespace pydeconv
