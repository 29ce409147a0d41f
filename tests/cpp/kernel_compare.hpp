// Shared by the fast-kernel tests (test_activation, test_convt, test_eltwise, test_mul,
// test_upsample): random tensors, region-limited gradients (NaN outside each sample's region for
// the fast kernel, which must not read there; zero for the reference), and the fast-vs-reference
// comparison at 1 and 2 threads (same bits), optionally with ctx.reference selecting the twin.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "check.hpp"
#include "kernels/kernels.hpp"

namespace kcmp {

using namespace pydeconv;

inline const Ctx kRef{1, true};
inline const Ctx kFast1{1, false};
inline const Ctx kFast2{2, false};

// Uniform values in [-scale, scale].
inline Tensor random_tensor(const Shape& s, std::mt19937& rng, float scale = 1.0f) {
  Tensor t(s);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = u(rng) * scale;
  return t;
}

inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.numel())) == 0;
}

// max |a - b| / (1 + |b|); a NaN anywhere makes it infinite (so it fails every tolerance).
inline double rel_err(const Tensor& a, const Tensor& b) {
  double e = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::fabs(double(a.data()[i]) - b.data()[i]) / (1.0 + std::fabs(b.data()[i]));
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    if (d > e) e = d;
  }
  return e;
}

// Fails (naming `what`) unless `fast` has `ref`'s shape and is within `tol` of it (rel_err).
inline void expect_close(const Tensor& fast, const Tensor& ref, double tol,
                         const std::string& what) {
  if (!(fast.shape() == ref.shape()) || !(rel_err(fast, ref) <= tol))
    check::fail_at(__FILE__, __LINE__,
                   what + ": fast vs reference error " + std::to_string(rel_err(fast, ref)));
}

// Sample b's region in s's plane: even samples the lower two thirds' left half, odd ones every row
// and the whole width...
inline Region halves(const Shape& s, int64_t b) {
  return {b % 2 ? 0 : s.h / 3, s.h, 0, b % 2 ? s.w : (s.w + 1) / 2};
}
// ... or the right half of it ...
inline Region halves_right(const Shape& s, int64_t b) {
  return {b % 2 ? 0 : s.h / 3, s.h, b % 2 ? s.w / 2 : 0, b % 2 ? s.w : (s.w + 1) / 2};
}
// ... or `halves` with every third sample (b % 3 == 2) one position.
inline Region halves_and_points(const Shape& s, int64_t b) {
  return b % 3 == 2 ? Region{s.h / 2, s.h / 2 + 1, s.w - 1, s.w} : halves(s, b);
}

// A gradient of batch `batch` (s's C, H, W), random inside each sample's region (`box`'s, the
// last sample's empty) and `outside` elsewhere; the regions go to `rs`.
inline Tensor region_grad(const Shape& s, int64_t batch, std::mt19937& rng, Regions& rs,
                          float outside, Region (*box)(const Shape&, int64_t) = halves) {
  Tensor g(s.with_n(batch), outside);
  rs.clear();
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t b = 0; b < batch; ++b) {
    const Region r = b == batch - 1 ? Region{0, 0, 0, 0} : box(s, b);
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t y = r.y0; y < r.y1; ++y)
        for (int64_t x = r.x0; x < r.x1; ++x) g.plane(b, c)[y * s.w + x] = u(rng);
    rs.push_back(r);
  }
  return g;
}

// A zero-outside copy of a gradient limited to the regions `rs` (the reference kernels read
// everything).
inline Tensor zero_outside(const Tensor& g, const Regions& rs) {
  Tensor z(g.shape(), 0.f);
  const Shape& s = g.shape();
  for (int64_t b = 0; b < s.n; ++b) {
    const Region& r = rs[static_cast<size_t>(b)];
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t y = r.y0; y < r.y1; ++y)
        for (int64_t x = r.x0; x < r.x1; ++x)
          z.plane(b, c)[y * s.w + x] = g.plane(b, c)[y * s.w + x];
  }
  return z;
}

// The same gradient (`halves_right` regions) twice: `poison` NaN outside the regions, `zero` 0.
inline void region_grads(const Shape& s, int64_t batch, std::mt19937& rng, Regions& rs,
                         Tensor& zero, Tensor& poison) {
  poison = region_grad(s, batch, rng, rs, std::numeric_limits<float>::quiet_NaN(), halves_right);
  zero = zero_outside(poison, rs);
}

// Runs `fast` at 1 and 2 threads and `ref` on copies of `init`; compares them. Returns the
// reference's result.
template <typename Fast, typename Ref>
Tensor compare(const Tensor& init, Fast fast, Ref ref, double tol, const std::string& what) {
  Tensor r = init.clone(), f1 = init.clone(), f2 = init.clone();
  ref(r);
  fast(kFast1, f1);
  fast(kFast2, f2);
  expect_close(f1, r, tol, what);
  if (!same_bits(f1, f2)) check::fail_at(__FILE__, __LINE__, what + ": 1 and 2 threads differ");
  return r;
}

// `compare`, and then `fast` under kRef (the entry point selects its twin under ctx.reference)
// must give the reference's bits.
template <typename Fast, typename Ref>
void compare_with_twin(const Tensor& init, Fast fast, Ref ref, double tol,
                       const std::string& what) {
  const Tensor r = compare(init, fast, ref, tol, what);
  Tensor sel = init.clone();
  fast(kRef, sel);
  if (!same_bits(sel, r)) check::fail_at(__FILE__, __LINE__, what + ": ctx.reference not the twin");
}

}  // namespace kcmp
