#include <sys/mman.h>

#include "buffer_pool.hpp"
#include "pydeconv/settings.hpp"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
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
  if (mapped)
    munmap(p, bytes);
  else
    std::free(p);
}

struct BufferPool::State {
  std::mutex mu;
  std::multimap<std::size_t, void*> idle;  // block size -> block
  std::size_t idle_bytes = 0, max_bytes = 0;
  ~State() {
    for (auto& kv : idle) release(kv.second, kv.first);
  }
  // Blocks of 1 MiB or more are mapped from the OS, so giving one back really returns it (a heap
  // block may stay in the process, pinned by its neighbours).
  static void* acquire(std::size_t size) {
    bool mapped = false;
    return aligned_alloc64(size, size >= kMapThreshold, &mapped);
  }
  static void release(void* p, std::size_t size) { aligned_free64(p, size, size >= kMapThreshold); }
};

BufferPool::BufferPool(std::size_t max_bytes) : st_(std::make_shared<State>()) {
  st_->max_bytes = max_bytes;
}

std::shared_ptr<void> BufferPool::get(std::size_t bytes, bool transient) {
  bytes = (bytes + 63) / 64 * 64;
  void* p = nullptr;
  std::size_t size = bytes;
  {
    std::lock_guard<std::mutex> lock(st_->mu);
    // The smallest idle block that fits, unless it is larger than asked for: up to 4x for a
    // transient tensor (a layer's freed input serves the next, smaller outputs, as a heap would
    // reuse it), the same size for one that may be kept (it would pin the rest of the block,
    // whose pages its earlier use made resident).
    auto it = st_->idle.lower_bound(bytes);
    if (it != st_->idle.end() && it->first <= (transient ? 4 * bytes : bytes)) {
      size = it->first;
      p = it->second;
      st_->idle_bytes -= size;
      st_->idle.erase(it);
    }
  }
  if (p == nullptr) p = State::acquire(size);
  // PYDECONV_POISON=1 (tests): every block handed out is filled with NaN bytes, so code that
  // reads pool memory it never wrote fails loudly instead of seeing a fresh page's zeros.
  if (poison_buffers()) std::memset(p, 0xff, size);
  std::weak_ptr<State> home = st_;
  return std::shared_ptr<void>(p, [home, size](void* q) {
    if (auto st = home.lock()) {
      std::lock_guard<std::mutex> lock(st->mu);
      if (st->idle_bytes + size <= st->max_bytes) {
        st->idle.emplace(size, q);
        st->idle_bytes += size;
        return;
      }
    }
    State::release(q, size);
  });
}

void BufferPool::clear() {
  std::multimap<std::size_t, void*> idle;
  {
    std::lock_guard<std::mutex> lock(st_->mu);
    idle.swap(st_->idle);
    st_->idle_bytes = 0;
  }
  for (auto& kv : idle) State::release(kv.second, kv.first);
#if defined(__GLIBC__)
  if (!idle.empty()) malloc_trim(0);  // the small (heap) blocks too
#endif
}

void BufferPool::raise_cap(std::size_t bytes) {
  std::lock_guard<std::mutex> lock(st_->mu);
  st_->max_bytes = std::max(st_->max_bytes, bytes);
}

std::size_t BufferPool::cap() const {
  std::lock_guard<std::mutex> lock(st_->mu);
  return st_->max_bytes;
}

std::size_t BufferPool::idle_bytes() const {
  std::lock_guard<std::mutex> lock(st_->mu);
  return st_->idle_bytes;
}

}  // namespace pydeconv
