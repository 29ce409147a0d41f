// BufferPool: blocks come back and are handed out again (same address), the fit rules (exact for
// tensors a trace may keep, up to 4x for transient ones), the idle cap, clear(), blocks that
// outlive their pool, and many threads taking and returning blocks at once.
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

#include "buffer_pool.hpp"
#include "check.hpp"

using namespace pydeconv;

TEST(pool_reuses_freed_blocks) {
  BufferPool pool(std::size_t(64) << 20);
  void* first = nullptr;
  {
    Tensor t(Shape::nchw(1, 4, 300, 300), pool);
    first = t.data();
    t.data()[0] = 1.0f;  // writable
    CHECK(pool.idle_bytes() == 0);
  }
  CHECK(pool.idle_bytes() >= std::size_t(4 * 300 * 300 * 4));
  Tensor again(Shape::nchw(1, 4, 300, 300), pool);
  CHECK(static_cast<void*>(again.data()) == first);
  CHECK(pool.idle_bytes() == 0);
}

TEST(pool_fit_rules) {
  BufferPool pool(std::size_t(64) << 20);
  void* big = nullptr;
  {
    Tensor t(Shape::nchw(1, 1, 1000, 1000), pool);
    big = t.data();
  }  // 4 MB idle
  {
    // A kept-size request of a third of it: exact fit only, so a fresh block.
    Tensor kept(Shape::nchw(1, 1, 1000, 333), pool, false);
    CHECK(static_cast<void*>(kept.data()) != big);
    // A transient one may take it (within 4x).
    Tensor transient(Shape::nchw(1, 1, 1000, 333), pool, true);
    CHECK(static_cast<void*>(transient.data()) == big);
  }
  // Far smaller than a quarter: not even a transient request takes it.
  Tensor tiny(Shape::nchw(1, 1, 10, 10), pool, true);
  CHECK(static_cast<void*>(tiny.data()) != big);
}

TEST(pool_cap_and_clear) {
  BufferPool pool(std::size_t(1) << 20);  // 1 MiB of idle blocks at most
  {
    Tensor a(Shape::nchw(1, 1, 1024, 512), pool);
  }  // 2 MiB: over the cap, freed at once
  CHECK(pool.idle_bytes() == 0);
  {
    Tensor b(Shape::nchw(1, 1, 256, 256), pool);
  }  // 256 KiB: kept
  CHECK(pool.idle_bytes() == std::size_t(256 * 256 * 4));
  pool.clear();
  CHECK(pool.idle_bytes() == 0);
}

TEST(pool_blocks_outlive_the_pool) {
  Tensor survivor;
  {
    BufferPool pool(std::size_t(8) << 20);
    survivor = Tensor(Shape::nchw(2, 3, 40, 40), pool);
  }
  for (int64_t i = 0; i < survivor.numel(); ++i) survivor.data()[i] = float(i);
  CHECK(survivor.data()[survivor.numel() - 1] == float(survivor.numel() - 1));
}  // freed by its deleter with no pool left

TEST(pool_many_threads) {
  BufferPool pool(std::size_t(32) << 20);
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&pool, t] {
      for (int i = 0; i < 500; ++i) {
        Tensor a(Shape::nchw(1, 1 + (i + t) % 5, 64, 64), pool, i % 2 == 0);
        a.data()[0] = float(t);
        Tensor b(Shape::nchw(1, 2, 32, 32), pool);
        b.data()[b.numel() - 1] = float(i);
        if (a.data()[0] != float(t) || b.data()[b.numel() - 1] != float(i)) std::abort();
      }
    });
  for (auto& th : ts) th.join();
  CHECK(pool.idle_bytes() <= std::size_t(32) << 20);
  // Live blocks are distinct.
  std::vector<Tensor> live;
  std::set<const float*> seen;
  for (int i = 0; i < 20; ++i) {
    live.emplace_back(Shape::nchw(1, 1, 64, 64), pool, true);
    CHECK(seen.insert(live.back().data()).second);
  }
}

// -- speed: the executor raises the idle cap to what a forward pass allocates (batches larger
// than the initial cap then reuse their blocks); the cap never falls.
TEST(pool_raise_cap) {
  BufferPool pool(std::size_t(1) << 20);
  {
    Tensor a(Shape::nchw(1, 1, 1024, 512), pool);
  }  // 2 MiB: over the cap, freed at once
  CHECK(pool.idle_bytes() == 0);
  pool.raise_cap(std::size_t(4) << 20);
  CHECK(pool.cap() == (std::size_t(4) << 20));
  {
    Tensor a(Shape::nchw(1, 1, 1024, 512), pool);
  }  // now kept
  CHECK(pool.idle_bytes() == std::size_t(2) << 20);
  pool.raise_cap(std::size_t(1) << 20);
  CHECK(pool.cap() == (std::size_t(4) << 20));
}

PYDECONV_TEST_MAIN()
