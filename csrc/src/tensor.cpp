#include "pydeconv/tensor.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace pydeconv {

std::string Shape::str() const {
  std::string s = "(";
  auto d = dims();
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}

namespace {
constexpr std::size_t kMapThreshold = std::size_t(1) << 20;
}

void* aligned_alloc64(std::size_t bytes, bool zeroed, bool* mapped) {
  *mapped = zeroed && bytes >= kMapThreshold;
  if (*mapped) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;  // page-aligned and zero
  }
  std::size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  if (zeroed) std::memset(p, 0, rounded);
  return p;
}

void aligned_free64(void* p, std::size_t bytes, bool mapped) noexcept {
  if (mapped) munmap(p, bytes);
  else std::free(p);
}

}  // namespace pydeconv
