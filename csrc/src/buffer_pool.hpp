// pydeconv (internal): the buffer pool a net's forward passes and projections draw on, and the
// Tensor constructor that takes its storage from it.
#pragma once
#include <algorithm>
#include <cstddef>
#include <memory>

#include "pydeconv/tensor.hpp"

namespace pydeconv {

// Freed 64-byte aligned blocks kept for reuse, for tensors allocated with the same sizes call
// after call (a net's activations, ReLU masks and pooling switches on every forward pass): a
// block that comes back is handed out again instead of being returned to the OS and faulted in
// afresh (a VGG16 forward otherwise takes ~9,000 page faults). Holds at most `max_bytes` of idle
// blocks; blocks freed past that, or after the pool is gone, go back to the system. Thread-safe.
class BufferPool {
 public:
  explicit BufferPool(std::size_t max_bytes);
  // A block of at least `bytes` (uninitialised); the deleter returns it to the pool.
  // `transient`: the caller frees it soon, so a much larger idle block may serve.
  std::shared_ptr<void> get(std::size_t bytes, bool transient);
  // Hands every idle block back to the system.
  void clear();
  // Keep up to `bytes` of idle blocks from now on, if that is more than the current cap: what
  // one forward pass takes (the executor raises it per call), so that a batch whose activations
  // outgrow the initial cap reuses its blocks on the next call instead of faulting them in afresh
  // (a batch-8 VGG16 forward: ~8,000 page faults per image with keep='minimal', ~26,000 with
  // 'all', against none at batch 1). The pool then holds at most what the largest pass used.
  void raise_cap(std::size_t bytes);
  std::size_t cap() const;
  std::size_t idle_bytes() const;

 private:
  struct State;
  std::shared_ptr<State> st_;
};

template <typename T>
TensorT<T>::TensorT(const Shape& s, BufferPool& pool, bool transient) : shape_(s) {
  if (s.numel() < 0) fail(ErrorKind::Shape, "negative tensor size");
  std::shared_ptr<void> block =
      pool.get(static_cast<std::size_t>(std::max<int64_t>(s.numel(), 1)) * sizeof(T), transient);
  data_ = std::shared_ptr<T>(block, static_cast<T*>(block.get()));
}

}  // namespace pydeconv
