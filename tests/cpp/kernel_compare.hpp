// Shared by the fast-kernel tests of the structure kinds (test_mul, test_upsample): random
// tensors, region-limited gradients (NaN outside each sample's region for the fast kernel, which
// must not read there; zero for the reference), and the fast-vs-reference comparison at 1 and 2
// threads (same bits) with ctx.reference selecting the twin.
#pragma once
#include <cmath>
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

inline Tensor random_tensor(const Shape& s, std::mt19937& rng) {
  Tensor t(s);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = u(rng);
  return t;
}

inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.numel())) == 0;
}

inline double rel_err(const Tensor& a, const Tensor& b) {
  double e = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::fabs(double(a.data()[i]) - b.data()[i]) / (1.0 + std::fabs(b.data()[i]));
    if (!(d <= e)) e = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
  }
  return e;
}

// A gradient of batch `batch` random inside each sample's region (a different box per sample,
// the last one empty): `zero` holds 0 outside them, `poison` NaN.
inline void region_grads(const Shape& s, int64_t batch, std::mt19937& rng, Regions& rs,
                         Tensor& zero, Tensor& poison) {
  zero = Tensor(s.with_n(batch), 0.f);
  poison = Tensor(s.with_n(batch), std::numeric_limits<float>::quiet_NaN());
  rs.clear();
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t b = 0; b < batch; ++b) {
    Region r{b % 2 ? 0 : s.h / 3, s.h, b % 2 ? s.w / 2 : 0, b % 2 ? s.w : (s.w + 1) / 2};
    if (b == batch - 1) r = Region{0, 0, 0, 0};
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t y = r.y0; y < r.y1; ++y)
        for (int64_t x = r.x0; x < r.x1; ++x)
          zero.plane(b, c)[y * s.w + x] = poison.plane(b, c)[y * s.w + x] = u(rng);
    rs.push_back(r);
  }
}

// Runs `fast` at 1 and 2 threads and `ref` on copies of `init`; compares them.
template <typename Fast, typename Ref>
void compare(const Tensor& init, Fast fast, Ref ref, double tol, const std::string& what) {
  Tensor r = init.clone(), f1 = init.clone(), f2 = init.clone();
  ref(r);
  fast(kFast1, f1);
  fast(kFast2, f2);
  if (!(rel_err(f1, r) <= tol))
    check::fail_at(__FILE__, __LINE__,
                   what + ": fast vs reference error " + std::to_string(rel_err(f1, r)));
  if (!same_bits(f1, f2)) check::fail_at(__FILE__, __LINE__, what + ": 1 and 2 threads differ");
}

}  // namespace kcmp
