// A grow-only, 64-byte aligned float buffer owned by one thread (kernels keep it thread_local), so
// repeated calls reuse the same memory instead of page-faulting fresh buffers every time.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace pydeconv::kernels {

class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p_); }
  // At least `count` floats; the contents are not kept when it grows.
  float* get(int64_t count) {
    if (count > cap_) {
      const int64_t bytes = (std::max<int64_t>(count, 1) * 4 + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, static_cast<std::size_t>(bytes));
      if (p == nullptr) throw std::bad_alloc();
      std::free(p_);
      p_ = static_cast<float*>(p);
      cap_ = count;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  int64_t cap_ = 0;
};

}  // namespace pydeconv::kernels
