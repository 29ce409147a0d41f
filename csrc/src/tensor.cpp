#include "pydeconv/tensor.hpp"

#include <cstdlib>
#include <new>

namespace pydeconv {

std::string Shape::str() const {
  std::string s = "(";
  auto d = dims();
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}

void* aligned_alloc64(std::size_t bytes) {
  std::size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  return p;
}

void aligned_free64(void* p) noexcept { std::free(p); }

}  // namespace pydeconv
