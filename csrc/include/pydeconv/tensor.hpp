// pydeconv: dense tensors (rank 2 (N,C) or rank 4 (N,C,H,W)), row-major, shared storage.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pydeconv/error.hpp"

namespace pydeconv {

// A shape: rank 2 tensors (N, C) keep h = w = 1 so every kernel can treat them as NCHW; rank 1
// (parameters such as biases) keeps its length in n.
struct Shape {
  int rank = 4;
  int64_t n = 0, c = 0, h = 1, w = 1;

  static Shape nchw(int64_t n, int64_t c, int64_t h, int64_t w) { return {4, n, c, h, w}; }
  static Shape nc(int64_t n, int64_t c) { return {2, n, c, 1, 1}; }
  static Shape vec(int64_t n) { return {1, n, 1, 1, 1}; }
  int64_t plane() const { return h * w; }
  int64_t sample() const { return c * h * w; }
  int64_t numel() const { return n * c * h * w; }
  Shape with_n(int64_t nn) const {
    Shape s = *this;
    s.n = nn;
    return s;
  }
  bool same_chw(const Shape& o) const { return rank == o.rank && c == o.c && h == o.h && w == o.w; }
  bool operator==(const Shape& o) const { return same_chw(o) && n == o.n; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::vector<int64_t> dims() const {
    if (rank == 1) return {n};
    if (rank == 2) return {n, c};
    return {n, c, h, w};
  }
  std::string str() const;  // "(1, 64, 112, 112)"
};

template <typename T>
class TensorT {
 public:
  TensorT() = default;
  explicit TensorT(const Shape& s) : shape_(s), data_(alloc(s.numel(), false)) {}
  // Zero-filled tensors of 1 MiB or more come straight from the OS, zero and untouched: pages
  // nobody writes are never faulted in.
  TensorT(const Shape& s, T fill) : shape_(s), data_(alloc(s.numel(), fill == T(0))) {
    if (fill != T(0)) std::fill(data(), data() + numel(), fill);
  }
  // Uninitialised storage from `pool` (internal: csrc/src/buffer_pool.hpp), returned to it when
  // the last owner lets go.
  TensorT(const Shape& s, class BufferPool& pool, bool transient = false);
  // Wraps external storage kept alive by `owner` (e.g. a NumPy array); no copy.
  TensorT(const Shape& s, std::shared_ptr<T> storage) : shape_(s), data_(std::move(storage)) {}

  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_.numel(); }
  bool empty() const { return data_ == nullptr; }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  T* sample(int64_t n) { return data() + n * shape_.sample(); }
  const T* sample(int64_t n) const { return data() + n * shape_.sample(); }
  T* plane(int64_t n, int64_t c) { return data() + (n * shape_.c + c) * shape_.plane(); }
  const T* plane(int64_t n, int64_t c) const {
    return data() + (n * shape_.c + c) * shape_.plane();
  }
  const std::shared_ptr<T>& storage() const { return data_; }
  void zero() { std::fill(data(), data() + numel(), T(0)); }
  // Same storage, another shape with the same number of elements (flatten).
  TensorT reshaped(const Shape& s) const {
    if (s.numel() != numel()) fail(ErrorKind::Shape, "reshape " + shape_.str() + " -> " + s.str());
    return TensorT(s, data_);
  }
  TensorT clone() const {
    TensorT t(shape_);
    std::copy(data(), data() + numel(), t.data());
    return t;
  }

 private:
  static std::shared_ptr<T> alloc(int64_t count, bool zeroed);
  Shape shape_;
  std::shared_ptr<T> data_;
};

using Tensor = TensorT<float>;
using IndexTensor = TensorT<int32_t>;

// 64-byte aligned allocation so SIMD kernels may use aligned loads on rows they own. A large
// zero-filled block is mapped from the OS (zero, and only the pages written are ever faulted in);
// everything else comes from the heap, which recycles memory across repeated forward passes.
// `mapped` tells the free which one it was.
void* aligned_alloc64(std::size_t bytes, bool zeroed, bool* mapped);
void aligned_free64(void* p, std::size_t bytes, bool mapped) noexcept;

template <typename T>
std::shared_ptr<T> TensorT<T>::alloc(int64_t count, bool zeroed) {
  if (count < 0) fail(ErrorKind::Shape, "negative tensor size");
  std::size_t bytes = static_cast<std::size_t>(count > 0 ? count : 1) * sizeof(T);
  bool mapped = false;
  T* p = static_cast<T*>(aligned_alloc64(bytes, zeroed, &mapped));
  return std::shared_ptr<T>(p, [bytes, mapped](T* q) { aligned_free64(q, bytes, mapped); });
}

}  // namespace pydeconv
