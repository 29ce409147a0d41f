// Fast pooling and LRN kernels against the reference kernels (kernels/ref/), on odd shapes, at 1
// and 2 threads: max pooling outputs and switches bit-exact (ties, -inf, NaN, padding, stride >
// kernel, dilation, ceil_mode), region-limited unpooling exact and adjoint to the switch gather,
// LRN forward within 1e-6 relative for sizes 1..6 and several betas, LRN backward within 1e-5,
// linear's small-batch (matrix-vector) path against the reference GEMM, and every result
// bit-identical run to run and across thread counts.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "isa_modes.hpp"
#include "kernels/cpu.hpp"
#include "kernels/kernels.hpp"

using namespace pydeconv;
using namespace pydeconv::kernels;

namespace {

const Ctx kRef{1, true};
const Ctx kFast1{1, false};
const Ctx kFast2{2, false};

// Uniform values in [-scale, scale]; with `levels` > 0 they are quantised to that many values so
// pooling windows hold ties.
Tensor random_tensor(const Shape& s, std::mt19937& rng, float scale = 1.0f, int levels = 0) {
  Tensor t(s);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) {
    float v = u(rng);
    if (levels > 0) v = std::round(v * float(levels)) / float(levels);
    t.data()[i] = v * scale;
  }
  return t;
}

template <typename T>
bool same_bits(const TensorT<T>& a, const TensorT<T>& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<size_t>(a.numel())) == 0;
}

// A pooling case: input (n, c, h, w) and its window.
struct PoolCase {
  int64_t c, h, w;
  Window2d g;
  std::string str() const {
    return "c=" + std::to_string(c) + " " + std::to_string(h) + "x" + std::to_string(w) +
           " k=" + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
           " s=" + std::to_string(g.sh) + "x" + std::to_string(g.sw) +
           " pad=" + std::to_string(g.pt) + "," + std::to_string(g.pl) + "," +
           std::to_string(g.pb) + "," + std::to_string(g.pr) + " dil=" + std::to_string(g.dh) +
           "x" + std::to_string(g.dw) + " ceil=" + std::to_string(g.ceil_mode);
  }
};

Window2d window(int64_t kh, int64_t kw, int64_t sh, int64_t sw, std::vector<int64_t> pad, bool ceil,
                int64_t dh = 1, int64_t dw = 1) {
  Window2d g;
  g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw;
  g.pt = pad[0], g.pl = pad[1], g.pb = pad[2], g.pr = pad[3];
  g.dh = dh, g.dw = dw;
  g.ceil_mode = ceil;
  return g;
}

// Every window shape the kernels special-case (2x2/2, 3x3/2, 3x3/1) and general ones, each on
// several sizes; returns only the cases whose output is non-empty.
std::vector<PoolCase> pool_cases() {
  std::vector<Window2d> gs = {
      window(2, 2, 2, 2, {0, 0, 0, 0}, false),
      window(2, 2, 2, 2, {0, 0, 0, 0}, true),
      window(3, 3, 2, 2, {0, 0, 0, 0}, true),
      window(3, 3, 2, 2, {1, 1, 1, 1}, false),
      window(3, 3, 1, 1, {1, 1, 1, 1}, false),
      window(3, 3, 1, 1, {0, 2, 1, 0}, false),
      window(2, 3, 3, 4, {1, 0, 0, 2}, true),  // stride > kernel, asymmetric padding
      window(1, 1, 2, 2, {0, 0, 0, 0}, false),
      window(5, 5, 1, 1, {2, 2, 2, 2}, false),
      window(3, 2, 2, 3, {2, 1, 1, 1}, true),
      window(2, 2, 1, 1, {0, 0, 1, 1}, false),
      window(3, 3, 2, 2, {1, 1, 1, 1}, true, 2, 2),   // dilated
      window(2, 2, 1, 1, {2, 0, 2, 0}, false, 3, 1),  // dilated rows that can miss a small input
      window(2, 2, 2, 2, {1, 1, 1, 1}, false),
      window(3, 2, 3, 2, {1, 0, 2, 1}, true),  // padded tilings
  };
  std::vector<PoolCase> out;
  const int64_t sizes[][2] = {{1, 1}, {7, 7}, {13, 13}, {7, 13}, {13, 6}, {55, 55}};
  const int64_t channels[] = {1, 3, 13, 96};
  for (const Window2d& g : gs)
    for (auto& hw : sizes)
      for (int64_t c : channels) {
        if (c == 96 && hw[0] > 13) continue;  // keeps the test fast
        if (g.out_h(hw[0]) <= 0 || g.out_w(hw[1]) <= 0) continue;
        out.push_back({c, hw[0], hw[1], g});
      }
  return out;
}

Shape pooled(const PoolCase& pc, int64_t n) {
  return Shape::nchw(n, pc.c, pc.g.out_h(pc.h), pc.g.out_w(pc.w));
}

}  // namespace

TEST(max_pool_matches_reference_bit_exact) {
  // On every instruction set this CPU has (the interior fold is built per ISA).
  for (const std::string& isa : isa_modes()) {
    set_isa(isa);
    std::mt19937 rng(1);
    int cases = 0;
    for (const PoolCase& pc : pool_cases()) {
      // Few levels: many ties; a few -inf and NaN values the first-element rule must handle.
      Tensor x = random_tensor(Shape::nchw(2, pc.c, pc.h, pc.w), rng, 1.0f, 3);
      for (int64_t i = 0; i < x.numel(); i += 17)
        x.data()[i] = -std::numeric_limits<float>::infinity();
      if (pc.c == 13) x.data()[x.numel() / 2] = std::numeric_limits<float>::quiet_NaN();
      const Shape os = pooled(pc, 2);
      Tensor ref(os), fast(os);
      IndexTensor sref(os), sfast(os);
      max_pool2d_forward(kRef, x, pc.g, ref, sref);
      for (const Ctx& ctx : {kFast1, kFast2}) {
        max_pool2d_forward(ctx, x, pc.g, fast, sfast);
        if (!same_bits(ref, fast) || !same_bits(sref, sfast))
          check::fail_at(__FILE__, __LINE__,
                         "max pool differs: " + pc.str() + " " + isa +
                             " threads=" + std::to_string(ctx.threads));
      }
      ++cases;
    }
    CHECK(cases > 150);
  }
  set_isa("auto");
}

TEST(max_pool_switch_semantics) {
  // 1x1x2x4, 2x2 stride 2: window 0 holds a tie (first in row-major order wins), window 1 only
  // -inf (its first element wins, index 2).
  const float inf = std::numeric_limits<float>::infinity();
  Tensor x(Shape::nchw(1, 1, 2, 4));
  const float v[] = {5, 1, -inf, -inf, 2, 5, -inf, -inf};
  std::copy(v, v + 8, x.data());
  Tensor y(Shape::nchw(1, 1, 1, 2));
  IndexTensor s(y.shape());
  max_pool2d_forward(kFast1, x, window(2, 2, 2, 2, {0, 0, 0, 0}, false), y, s);
  CHECK(y.data()[0] == 5.f && s.data()[0] == 0);
  CHECK(y.data()[1] == -inf && s.data()[1] == 2);
  // Padding never wins, even against negative values: 3x3 stride 1 pad 1 on an all -1 map.
  Tensor m(Shape::nchw(1, 1, 3, 3), -1.f);
  Tensor z(Shape::nchw(1, 1, 3, 3));
  IndexTensor sz(z.shape());
  max_pool2d_forward(kFast1, m, window(3, 3, 1, 1, {1, 1, 1, 1}, false), z, sz);
  for (int64_t i = 0; i < 9; ++i) CHECK(z.data()[i] == -1.f);
  CHECK(sz.data()[0] == 0 && sz.data()[4] == 0 && sz.data()[8] == 4);
}

// An unpooling gout of batch `batch`, non-zero only inside each sample's region (the lower right
// of the map; the last sample's is empty), with small integer values; the regions go to `rs`.
Tensor region_gout(const Shape& os, int64_t batch, std::mt19937& rng, Regions& rs) {
  Tensor gout(os.with_n(batch), 0.f);
  for (int64_t b = 0; b < batch; ++b) {
    Region r{os.h / 3, os.h, os.w / 2, os.w};
    if (b == batch - 1) r = Region{0, 0, 0, 0};
    for (int64_t c = 0; c < os.c; ++c)
      for (int64_t yy = r.y0; yy < r.y1; ++yy)
        for (int64_t xx = r.x0; xx < r.x1; ++xx)
          gout.plane(b, c)[yy * os.w + xx] = float(rng() % 7) - 3.f;
    rs.push_back(r);
  }
  return gout;
}

TEST(max_unpool_region_limited_matches_reference) {
  std::mt19937 rng(2);
  const int64_t n = 2, reps = 2;
  for (const PoolCase& pc : pool_cases()) {
    if (pc.c == 96) continue;
    Tensor x = random_tensor(Shape::nchw(n, pc.c, pc.h, pc.w), rng, 1.0f, 4);
    const Shape os = pooled(pc, n);
    Tensor y(os);
    IndexTensor sw(os);
    max_pool2d_forward(kRef, x, pc.g, y, sw);
    Regions rs;
    const Tensor gout = region_gout(os, n * reps, rng, rs);
    const Tensor gin0 = random_tensor(Shape::nchw(n * reps, pc.c, pc.h, pc.w), rng);
    Tensor ref = gin0.clone();
    max_unpool2d_ref(gout, sw, ref, reps);
    for (const Ctx& ctx : {kFast1, kFast2}) {
      Tensor fast = gin0.clone();
      max_unpool2d(ctx, gout, rs, sw, fast, reps);
      if (!same_bits(ref, fast)) check::fail_at(__FILE__, __LINE__, "unpool differs: " + pc.str());
    }
  }
}

// Windows that tile the input (stride = size) overwrite: every element of each region pixel's
// window is written (0 but at the switch), whatever gin held there, and nothing else is.
TEST(max_unpool_tiling_overwrites_its_windows) {
  std::mt19937 rng(12);
  const int64_t n = 2, reps = 2;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int tested = 0;
  for (const PoolCase& pc : pool_cases()) {
    const Window2d& g = pc.g;
    if (g.kh != g.sh || g.kw != g.sw || g.dh != 1 || g.dw != 1 || pc.c == 96) continue;
    ++tested;
    Tensor x = random_tensor(Shape::nchw(n, pc.c, pc.h, pc.w), rng, 1.0f, 4);
    const Shape os = pooled(pc, n);
    Tensor y(os);
    IndexTensor sw(os);
    max_pool2d_forward(kRef, x, g, y, sw);
    Regions rs;
    const Tensor gout = region_gout(os, n * reps, rng, rs);
    const Shape is = Shape::nchw(n * reps, pc.c, pc.h, pc.w);
    Tensor ref(is, 0.f);
    max_unpool2d_ref(gout, sw, ref, reps);
    for (const Ctx& ctx : {kFast1, kFast2}) {
      Tensor fast(is, nan);
      max_unpool2d(ctx, gout, rs, sw, fast, reps, &g);
      for (int64_t b = 0; b < is.n; ++b) {
        const Region& r = rs[b];
        // The windows' union: the input region of r.
        const int64_t y0 = std::max<int64_t>(0, r.y0 * g.sh - g.pt),
                      x0 = std::max<int64_t>(0, r.x0 * g.sw - g.pl);
        const int64_t y1 = r.empty() ? 0 : std::min(pc.h, (r.y1 - 1) * g.sh - g.pt + g.kh);
        const int64_t x1 = r.empty() ? 0 : std::min(pc.w, (r.x1 - 1) * g.sw - g.pl + g.kw);
        for (int64_t c = 0; c < pc.c; ++c)
          for (int64_t yy = 0; yy < pc.h; ++yy)
            for (int64_t xx = 0; xx < pc.w; ++xx) {
              const float got = fast.plane(b, c)[yy * pc.w + xx];
              const bool inside = yy >= y0 && yy < y1 && xx >= x0 && xx < x1;
              const bool ok = inside ? got == ref.plane(b, c)[yy * pc.w + xx] : std::isnan(got);
              if (!ok) check::fail_at(__FILE__, __LINE__, "tiling unpool: " + pc.str());
            }
      }
    }
  }
  CHECK(tested >= 10);
}

TEST(max_unpool_is_adjoint_of_switch_gather) {
  // <gather_S(v), u> == <v, unpool_S(u)>, with gather_S(v)[o] = v[S[o]].
  std::mt19937 rng(3);
  for (const PoolCase& pc : pool_cases()) {
    if (pc.c != 3) continue;
    Tensor x = random_tensor(Shape::nchw(1, pc.c, pc.h, pc.w), rng);
    const Shape os = pooled(pc, 1);
    Tensor y(os);
    IndexTensor sw(os);
    max_pool2d_forward(kFast2, x, pc.g, y, sw);
    Tensor v = random_tensor(x.shape(), rng), u = random_tensor(os, rng);
    Tensor back(x.shape(), 0.f);
    max_unpool2d(kFast2, u, Regions{Region::full(os)}, sw, back, 1);
    double lhs = 0, rhs = 0;
    for (int64_t c = 0; c < pc.c; ++c)
      for (int64_t i = 0; i < os.plane(); ++i) {
        const int32_t s = sw.plane(0, c)[i];
        if (s >= 0) lhs += double(v.plane(0, c)[s]) * u.plane(0, c)[i];
      }
    for (int64_t i = 0; i < v.numel(); ++i) rhs += double(v.data()[i]) * back.data()[i];
    CHECK_NEAR(lhs, rhs, 1e-5 * (1.0 + std::fabs(lhs)));
  }
}

namespace {

struct LrnCase {
  int64_t c, h, w;
  LrnParams p;
  float scale;  // input magnitude: large enough that the normalisation matters
  std::string str() const {
    return "c=" + std::to_string(c) + " " + std::to_string(h) + "x" + std::to_string(w) +
           " size=" + std::to_string(p.size) + " alpha=" + std::to_string(p.alpha) +
           " beta=" + std::to_string(p.beta) + " bias=" + std::to_string(p.bias);
  }
};

std::vector<LrnCase> lrn_cases() {
  std::vector<LrnCase> out;
  const int64_t channels[] = {1, 3, 13, 96};
  const int64_t sizes[][2] = {{1, 1}, {7, 7}, {13, 6}, {55, 55}};
  const double betas[] = {0.75, 0.5, 1.0, 0.6};
  for (int64_t c : channels)
    for (auto& hw : sizes)
      for (int64_t size = 1; size <= 6; ++size)
        for (double beta : betas) {
          if (hw[0] == 55 && (c == 96 || size % 2 == 0 || beta != 0.75)) continue;  // time
          LrnParams p;
          p.size = size;
          p.beta = beta;
          p.alpha = size % 3 == 0 ? 1e-4 : 0.7;
          p.bias = size % 2 ? 1.0 : 2.0;
          out.push_back({c, hw[0], hw[1], p, p.alpha < 1e-3 ? 30.f : 3.f});
        }
  return out;
}

// |a - b| <= rel * |b| + abs_tol for every element.
void check_close(const Tensor& ref, const Tensor& got, double rel, double abs_tol,
                 const std::string& what) {
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.data()[i], g = got.data()[i];
    if (!(std::fabs(r - g) <= rel * std::fabs(r) + abs_tol))
      check::fail_at(__FILE__, __LINE__,
                     what + ": element " + std::to_string(i) + " ref " + std::to_string(r) +
                         " got " + std::to_string(g));
  }
}

}  // namespace

TEST(lrn_forward_matches_reference) {
  // On every instruction set this CPU has (d^-0.75 comes from the kernel table), each giving the
  // portable kernels' bits.
  std::mt19937 rng(4);
  for (const LrnCase& lc : lrn_cases()) {
    Tensor x = random_tensor(Shape::nchw(2, lc.c, lc.h, lc.w), rng, lc.scale);
    Tensor ref(x.shape()), portable;
    lrn_forward(kRef, x, lc.p, ref);
    for (const std::string& isa : isa_modes()) {
      set_isa(isa);
      const std::string what = lc.str() + " " + isa;
      Tensor f1(x.shape()), f2(x.shape()), again(x.shape());
      lrn_forward(kFast1, x, lc.p, f1);
      lrn_forward(kFast2, x, lc.p, f2);
      lrn_forward(kFast2, x, lc.p, again);
      check_close(ref, f1, 1e-6, 1e-30, "lrn forward " + what);
      if (!same_bits(f1, f2) || !same_bits(f2, again))
        check::fail_at(__FILE__, __LINE__, "lrn forward not deterministic: " + what);
      if (isa == "portable") portable = f1;
      if (!same_bits(f1, portable))
        check::fail_at(__FILE__, __LINE__, "lrn forward differs from portable: " + what);
    }
    set_isa("auto");
  }
}

TEST(lrn_forward_rank2) {
  // (N, C) tensors (after flatten) are (N, C, 1, 1): the window runs over C.
  std::mt19937 rng(5);
  LrnParams p;
  p.alpha = 0.5;
  Tensor x = random_tensor(Shape::nc(3, 10), rng, 2.f);
  Tensor ref(x.shape()), got(x.shape());
  lrn_forward(kRef, x, p, ref);
  lrn_forward(kFast2, x, p, got);
  check_close(ref, got, 1e-6, 1e-30, "lrn forward rank 2");
}

TEST(lrn_backward_matches_reference) {
  std::mt19937 rng(6);
  const int64_t n = 2, reps = 2;
  for (const LrnCase& lc : lrn_cases()) {
    if (lc.h == 55 && lc.c > 3) continue;
    Tensor x = random_tensor(Shape::nchw(n, lc.c, lc.h, lc.w), rng, lc.scale);
    const Shape gs = Shape::nchw(n * reps, lc.c, lc.h, lc.w);
    // Per sample: gout non-zero only in its region; sample 1's region is empty.
    Tensor gout(gs, 0.f);
    Regions rs;
    for (int64_t b = 0; b < n * reps; ++b) {
      Region r{lc.h / 2, lc.h, 0, (lc.w + 1) / 2};
      if (b == 0) r = Region::full(gs);
      if (b == 1) r = Region{0, 0, 0, 0};
      for (int64_t c = 0; c < lc.c; ++c)
        for (int64_t y = r.y0; y < r.y1; ++y)
          for (int64_t xx = r.x0; xx < r.x1; ++xx)
            gout.plane(b, c)[y * lc.w + xx] = float(rng() % 2001) / 1000.f - 1.f;
      rs.push_back(r);
    }
    const Tensor gin0 = random_tensor(gs, rng);
    Tensor ref = gin0.clone(), portable;
    lrn_backward(kRef, x, gout, rs, lc.p, ref, reps);
    for (const std::string& isa : isa_modes()) {  // as in lrn_forward_matches_reference
      set_isa(isa);
      const std::string what = lc.str() + " " + isa;
      Tensor f1 = gin0.clone(), f2 = gin0.clone();
      lrn_backward(kFast1, x, gout, rs, lc.p, f1, reps);
      lrn_backward(kFast2, x, gout, rs, lc.p, f2, reps);
      // The result is a difference of two terms: tolerance relative to the larger term's scale.
      check_close(ref, f1, 1e-5, 1e-6, "lrn backward " + what);
      if (!same_bits(f1, f2))
        check::fail_at(__FILE__, __LINE__, "lrn backward differs across threads: " + what);
      if (isa == "portable") portable = f1;
      if (!same_bits(f1, portable))
        check::fail_at(__FILE__, __LINE__, "lrn backward differs from portable: " + what);
      // Outside the regions gin is untouched (bit for bit).
      for (int64_t i = 0; i < gs.sample(); ++i)
        CHECK(std::memcmp(f1.sample(1) + i, gin0.sample(1) + i, sizeof(float)) == 0);
    }
    set_isa("auto");
  }
}

TEST(lrn_backward_is_the_transposed_jacobian) {
  // <J^T g, v> against a central difference of <g, lrn(x + e v)> in double, on a small case.
  std::mt19937 rng(7);
  LrnParams p;
  p.size = 3;
  p.alpha = 0.9;
  p.beta = 0.75;
  const Shape s = Shape::nchw(1, 5, 2, 3);
  Tensor x = random_tensor(s, rng, 2.f), g = random_tensor(s, rng), v = random_tensor(s, rng);
  Tensor jt(s, 0.f);
  lrn_backward(kFast1, x, g, Regions{Region::full(s)}, p, jt, 1);
  auto f = [&](double e) {  // <g, lrn(x + e v)>, evaluated in double
    double acc = 0;
    for (int64_t i = 0; i < s.plane(); ++i)
      for (int64_t c = 0; c < s.c; ++c) {
        double sq = 0;
        for (int64_t j = std::max<int64_t>(0, c - 1); j <= std::min<int64_t>(s.c - 1, c + 1); ++j) {
          const double xj = x.data()[j * s.plane() + i] + e * v.data()[j * s.plane() + i];
          sq += xj * xj;
        }
        const double xc = x.data()[c * s.plane() + i] + e * v.data()[c * s.plane() + i];
        acc += g.data()[c * s.plane() + i] * xc * std::pow(p.bias + p.alpha / 3 * sq, -p.beta);
      }
    return acc;
  };
  const double e = 1e-4, fd = (f(e) - f(-e)) / (2 * e);
  double dot = 0;
  for (int64_t i = 0; i < s.numel(); ++i) dot += double(jt.data()[i]) * v.data()[i];
  CHECK_NEAR(dot, fd, 1e-4 * (1.0 + std::fabs(fd)));
}

#if PYDECONV_X86
namespace pydeconv::kernels {
void lrn_inv_pow075_avx2(const double* d, int64_t m, float* r);  // x86/lrn_avx2.cpp
void lrn_inv_pow075_avx2(const double* d, int64_t m, double* r);
}  // namespace pydeconv::kernels

TEST(lrn_avx2_power_is_bit_identical_to_portable) {
  // The AVX2 d^-0.75 must give the portable loop's bits, so results do not depend on the CPU.
  if (!cpu_has_avx2_fma()) return;
  std::mt19937 rng(10);
  std::uniform_real_distribution<double> e(-3.0, 12.0);
  std::vector<double> d(1003);
  for (double& v : d) v = std::pow(10.0, e(rng));
  std::vector<float> rf(d.size());
  std::vector<double> rd(d.size());
  lrn_inv_pow075_avx2(d.data(), static_cast<int64_t>(d.size()), rf.data());
  lrn_inv_pow075_avx2(d.data(), static_cast<int64_t>(d.size()), rd.data());
  for (size_t i = 0; i < d.size(); ++i) {
    const float v = static_cast<float>(d[i]);
    const float want_f = 1.0f / std::sqrt(v * std::sqrt(v));
    const double want_d = 1.0 / std::sqrt(d[i] * std::sqrt(d[i]));
    CHECK(std::memcmp(&rf[i], &want_f, sizeof(float)) == 0);
    CHECK(std::memcmp(&rd[i], &want_d, sizeof(double)) == 0);
  }
}
#endif

namespace {

// Allowed float error of a dot product of length k: (k + 2) u sum |a_p b_p| (u = 2^-24).
double dot_tol(const float* a, const float* b, int64_t k, int64_t sa, int64_t sb) {
  double s = 0;
  for (int64_t p = 0; p < k; ++p) s += std::fabs(double(a[p * sa]) * b[p * sb]);
  return (k + 2) * std::ldexp(1.0, -24) * s + 1e-30;
}

}  // namespace

TEST(linear_small_batch_matches_reference) {
  // Batches of 1 and 2 take the matrix-vector path (a kernel per ISA: rows in groups of 4 and a
  // remainder, 16 lanes and a k mod 16 tail), 3 the GEMM; lengths around the 16 lanes. On every
  // ISA this CPU has; the AVX2 and AVX-512 kernels must agree bit for bit.
  std::mt19937 rng(8);
  for (int64_t n : {1, 2, 3})
    for (int64_t i : {1, 15, 16, 17, 100, 1000})
      for (int64_t o : {1, 7, 33}) {
        Tensor x = random_tensor(Shape::nc(n, i), rng), w = random_tensor(Shape::nc(o, i), rng);
        Tensor bias = random_tensor(Shape::vec(o), rng);
        Tensor ref(Shape::nc(n, o));
        linear_forward(kRef, x, w, bias.data(), ref);
        Tensor avx2, avx512;
        for (const std::string& isa : isa_modes()) {
          set_isa(isa);
          Tensor f1(ref.shape()), f2(ref.shape());
          linear_forward(kFast1, x, w, bias.data(), f1);
          linear_forward(kFast2, x, w, bias.data(), f2);
          set_isa("auto");
          CHECK(same_bits(f1, f2));
          for (int64_t s = 0; s < n; ++s)
            for (int64_t j = 0; j < o; ++j)
              CHECK_NEAR(
                  f1.data()[s * o + j], ref.data()[s * o + j],
                  dot_tol(x.sample(s), w.sample(j), i, 1, 1) + 1e-6 * std::fabs(bias.data()[j]));
          if (isa == "avx2") avx2 = f1;
          if (isa == "avx512") avx512 = f1;
        }
        if (!avx2.empty() && !avx512.empty()) CHECK(same_bits(avx2, avx512));
      }
}

TEST(linear_backward_small_batch_matches_reference) {
  // gin += gout W, accumulating; gout mostly zero as when a projection starts at one unit.
  std::mt19937 rng(9);
  for (int64_t b : {1, 2, 3})
    for (int64_t i : {1, 17, 1500})
      for (int64_t o : {1, 9, 40}) {
        Tensor w = random_tensor(Shape::nc(o, i), rng), g(Shape::nc(b, o), 0.f);
        for (int64_t k = 0; k < g.numel(); k += 3) g.data()[k] = float(int(rng() % 5) - 2);
        const Tensor gin0 = random_tensor(Shape::nc(b, i), rng);
        Tensor ref = gin0.clone(), f1 = gin0.clone(), f2 = gin0.clone();
        linear_backward(kRef, g, w, ref);
        linear_backward(kFast1, g, w, f1);
        linear_backward(kFast2, g, w, f2);
        CHECK(same_bits(f1, f2));
        for (int64_t s = 0; s < b; ++s)
          for (int64_t c = 0; c < i; ++c)
            CHECK_NEAR(f1.data()[s * i + c], ref.data()[s * i + c],
                       dot_tol(g.sample(s), w.data() + c, o, 1, i) +
                           1e-6 * std::fabs(gin0.data()[s * i + c]));
      }
}

PYDECONV_TEST_MAIN()
