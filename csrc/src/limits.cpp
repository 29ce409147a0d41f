// The process-wide resource limits (pydeconv/limits.hpp). A mutex, not atomics: the struct is
// read once per load or per call, never per element.
#include "pydeconv/limits.hpp"

#include <mutex>

#include "pydeconv/error.hpp"

namespace pydeconv {
namespace {

std::mutex& guard() {
  static std::mutex m;
  return m;
}

Limits& current() {
  static Limits l;
  return l;
}

}  // namespace

Limits limits() {
  std::lock_guard<std::mutex> lock(guard());
  return current();
}

void set_limits(const Limits& l) {
  const struct {
    const char* name;
    int64_t value;
  } fields[] = {{"max_tensor_bytes", l.max_tensor_bytes},
                {"max_dim", l.max_dim},
                {"max_input_pixels", l.max_input_pixels},
                {"max_image_pixels", l.max_image_pixels},
                {"max_threads", l.max_threads},
                {"max_json_depth", l.max_json_depth},
                {"max_layers", l.max_layers},
                {"max_members", l.max_members},
                {"max_graph_bytes", l.max_graph_bytes}};
  for (const auto& f : fields)
    if (f.value < 1)
      fail(ErrorKind::Value,
           std::string("limit ") + f.name + " must be positive, got " + std::to_string(f.value));
  if (l.max_json_depth > Limits::kJsonDepthCap)
    fail(ErrorKind::Value, "limit max_json_depth must be at most " +
                               std::to_string(Limits::kJsonDepthCap) +
                               " (the parser recurses), got " + std::to_string(l.max_json_depth));
  std::lock_guard<std::mutex> lock(guard());
  current() = l;
}

std::string limit_str(const char* name, int64_t value) {
  return std::string(name) + " = " + std::to_string(value) + " (pydeconv.Limits)";
}

}  // namespace pydeconv
