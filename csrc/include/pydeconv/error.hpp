// pydeconv: the one exception type of the C++ library.
#pragma once
#include <stdexcept>
#include <string>

namespace pydeconv {

// What went wrong, so bindings can map each kind to its own Python exception class.
enum class ErrorKind {
  Format,    // a model or image file is missing, corrupt, truncated or malformed
  Graph,     // the graph is invalid: unknown kind, cycle, dangling input, bad attribute
  Shape,     // a tensor or parameter has the wrong shape or dtype
  NotFound,  // an unknown layer name
  Range,     // an index (channel, position) out of range
  Value,     // any other bad argument
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& msg) { throw Error(kind, msg); }

}  // namespace pydeconv
