// The element-wise activation kernels (kernels/activation.cpp, issue 14) against their reference
// twin (kernels/ref/activation_ref.cpp) for every kind and every way down (gradient, relu(g),
// relu(g) * f'(x)): odd shapes (1, 3, 13, 17 channels; 1x1 up to planes past the forward's chunk
// and enough elements for the threaded paths), at 1 and 2 threads (the same bits), with
// region-limited gradients (the last sample's region empty), reps > 1, accumulating and in place;
// the backward must not read gout outside the regions (NaN there changes nothing), and the entry
// points select the twin under ctx.reference.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel_compare.hpp"

using namespace pydeconv;
using namespace pydeconv::kernels;
using namespace kcmp;

namespace {

// A few exact kinks in `t` (every 7th element): 0, +-3 (hardswish), the clip ends used below.
Tensor with_kinks(Tensor t) {
  const float kinks[] = {0.f, 3.f, -3.f, -0.5f, 0.75f, 6.f};
  for (int64_t i = 0; i < t.numel(); i += 7) t.data()[i] = kinks[(i / 7) % 6];
  return t;
}

std::vector<Shape> shapes() {
  return {Shape::nchw(1, 1, 1, 1), Shape::nchw(1, 3, 5, 7), Shape::nchw(1, 13, 11, 6),
          Shape::nchw(1, 17, 71, 67), Shape::nc(1, 13)};
}

// Every kind's parameters (prelu: its slopes in `slope`, one per channel).
std::vector<std::pair<std::string, ActParams>> kinds(const std::vector<float>& slope) {
  std::vector<std::pair<std::string, ActParams>> out;
  auto add = [&](const char* name, Act op, float alpha = 0.f, float beta = 0.f, float lo = 0.f,
                 float hi = 0.f, const float* sl = nullptr) {
    ActParams p;
    p.op = op;
    p.alpha = alpha;
    p.beta = beta;
    p.lo = lo;
    p.hi = hi;
    p.slope = sl;
    out.emplace_back(name, p);
  };
  add("leaky_relu", Act::LeakyRelu, 0.1f);
  add("prelu", Act::LeakyRelu, 0.f, 0.f, 0.f, 0.f, slope.data());
  add("clip relu6", Act::Clip, 0.f, 0.f, 0.f, 6.f);
  add("clip band", Act::Clip, 0.f, 0.f, -0.5f, 0.75f);
  add("sigmoid", Act::Sigmoid);
  add("tanh", Act::Tanh);
  add("silu", Act::Silu);
  add("hardsigmoid", Act::HardSigmoid, 0.2f, 0.5f);
  add("hardswish", Act::HardSwish);
  add("mish", Act::Mish);
  add("elu", Act::Elu, 0.7f);
  add("gelu", Act::Gelu);
  add("gelu tanh", Act::GeluTanh);
  return out;
}

const char* down_name(ActDown d) {
  return d == ActDown::Gradient ? "gradient" : d == ActDown::Rectify ? "relu(g)" : "guided";
}

}  // namespace

TEST(activation_forward_matches_reference) {
  std::mt19937 rng(1);
  for (const Shape& s : shapes()) {
    std::vector<float> slope(static_cast<size_t>(s.c));
    for (size_t c = 0; c < slope.size(); ++c) slope[c] = -0.3f + 0.1f * static_cast<float>(c % 7);
    for (float scale : {1.f, 8.f}) {
      const Tensor x = with_kinks(random_tensor(s.with_n(2), rng, scale));
      for (const auto& k : kinds(slope)) {
        const std::string what = k.first + " forward " + s.str();
        Tensor out(x.shape());
        compare_with_twin(
            out, [&](const Ctx& ctx, Tensor& y) { activation_forward(ctx, x, k.second, y); },
            [&](Tensor& y) { activation_forward_ref(x, k.second, y); }, 2e-6, what);
      }
    }
  }
}

TEST(activation_backward_matches_reference_every_way_down) {
  std::mt19937 rng(2);
  const int64_t reps = 2, batch = 3 * reps;
  for (const Shape& s : shapes()) {
    std::vector<float> slope(static_cast<size_t>(s.c));
    for (size_t c = 0; c < slope.size(); ++c) slope[c] = 0.05f * static_cast<float>(c % 5) - 0.1f;
    const Tensor x = with_kinks(random_tensor(s.with_n(3), rng, 4.f));
    Regions rs;
    const Tensor g = region_grad(s, batch, rng, rs, 0.f);
    const Tensor gin0 = with_kinks(random_tensor(g.shape(), rng, 1.f));
    for (const auto& k : kinds(slope))
      for (ActDown down : {ActDown::Gradient, ActDown::Rectify, ActDown::Guided}) {
        const std::string what = k.first + " backward " + down_name(down) + " " + s.str();
        compare_with_twin(
            gin0,
            [&](const Ctx& ctx, Tensor& gin) {
              activation_backward(ctx, g, rs, x, k.second, down, gin, reps);
            },
            [&](Tensor& gin) { activation_backward_ref(g, x, k.second, down, gin, reps); }, 2e-6,
            what);
        // In place: gin is gout's own buffer.
        compare_with_twin(
            g,
            [&](const Ctx& ctx, Tensor& gin) {
              activation_backward(ctx, gin, rs, x, k.second, down, gin, reps);
            },
            [&](Tensor& gin) { activation_backward_ref(gin, x, k.second, down, gin, reps); }, 2e-6,
            what + " in place");
      }
  }
}

TEST(activation_backward_reads_only_the_regions) {
  // gout is NaN outside the regions: the fast backward (the row's kRegionOnly) never reads it
  // there, and leaves gin there untouched.
  std::mt19937 rng(3);
  const int64_t reps = 2, batch = 2 * reps;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Shape& s : shapes()) {
    std::vector<float> slope(static_cast<size_t>(s.c), 0.2f);
    const Tensor x = with_kinks(random_tensor(s.with_n(2), rng, 4.f));
    Regions rs;
    std::mt19937 rng_a(7), rng_b(7);
    const Tensor poisoned = region_grad(s, batch, rng_a, rs, nan);
    const Tensor clean = region_grad(s, batch, rng_b, rs, 0.f);
    const Tensor gin0 = with_kinks(random_tensor(clean.shape(), rng, 1.f));
    for (const auto& k : kinds(slope))
      for (ActDown down : {ActDown::Gradient, ActDown::Rectify, ActDown::Guided})
        for (const Ctx& ctx : {kFast1, kFast2}) {
          const std::string what = k.first + " region-only " + down_name(down) + " " + s.str();
          Tensor want = gin0.clone(), got = gin0.clone();
          activation_backward(ctx, clean, rs, x, k.second, down, want, reps);
          activation_backward(ctx, poisoned, rs, x, k.second, down, got, reps);
          if (!same_bits(got, want)) check::fail_at(__FILE__, __LINE__, what);
          Tensor inplace = poisoned.clone();  // in place: outside the regions it stays NaN
          activation_backward(ctx, inplace, rs, x, k.second, down, inplace, reps);
          for (int64_t b = 0; b < batch; ++b)
            for (int64_t c = 0; c < s.c; ++c)
              for (int64_t i = 0; i < s.plane(); ++i) {
                const Region& r = rs[static_cast<size_t>(b)];
                const int64_t y = i / s.w, xx = i % s.w;
                const bool inside = y >= r.y0 && y < r.y1 && xx >= r.x0 && xx < r.x1;
                const float v = inplace.plane(b, c)[i];
                if (inside == std::isnan(v)) check::fail_at(__FILE__, __LINE__, what + " in place");
              }
        }
  }
}

PYDECONV_TEST_MAIN()
