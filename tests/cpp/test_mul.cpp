// The fast mul kernels against their reference twins: every broadcast pattern (none, an SE gate
// (C, 1, 1), spatial (1, H, W), scalar, rows (C, 1, W), both inputs broadcast), either order, at
// 1 and 2 threads (same bits); the backward limited to each sample's region (NaN outside it must
// not be read) with reps > 1, one or both gradients, and mul(x, x) handing one gradient twice.
#include "kernel_compare.hpp"

using namespace pydeconv;
using namespace pydeconv::kernels;
using namespace kcmp;

namespace {

// (a's C, H, W) and (b's) as flags: 1 = the output's size, 0 = broadcast (size 1).
struct Pattern {
  const char* name;
  int a[3], b[3];
};
const Pattern kPatterns[] = {
    {"same", {1, 1, 1}, {1, 1, 1}},       {"se_gate", {1, 1, 1}, {1, 0, 0}},
    {"gate_first", {1, 0, 0}, {1, 1, 1}}, {"spatial", {1, 1, 1}, {0, 1, 1}},
    {"scalar", {0, 0, 0}, {1, 1, 1}},     {"rows", {1, 1, 1}, {1, 0, 1}},
    {"cols", {1, 1, 1}, {1, 1, 0}},       {"both", {1, 0, 1}, {0, 1, 0}},
};

Shape sub(const Shape& s, const int f[3], int64_t n) {
  return Shape::nchw(n, f[0] ? s.c : 1, f[1] ? s.h : 1, f[2] ? s.w : 1);
}

std::vector<Shape> shapes() {
  return {Shape::nchw(1, 1, 1, 1), Shape::nchw(1, 3, 5, 7), Shape::nchw(1, 13, 7, 6),
          Shape::nchw(1, 17, 41, 43), Shape::nchw(1, 3, 5, 150)};
}

}  // namespace

TEST(mul_forward_matches_reference) {
  std::mt19937 rng(1);
  for (const Shape& s : shapes())
    for (const Pattern& p : kPatterns) {
      const Tensor a = random_tensor(sub(s, p.a, 2), rng), b = random_tensor(sub(s, p.b, 2), rng);
      compare(
          Tensor(s.with_n(2), 0.f), [&](const Ctx& ctx, Tensor& y) { mul_forward(ctx, a, b, y); },
          [&](Tensor& y) { mul_forward_ref(a, b, y); }, 0.0,
          std::string("forward ") + p.name + " " + s.str());
      Tensor sel(s.with_n(2), 0.f), ref(s.with_n(2), 0.f);
      mul_forward(kRef, a, b, sel);
      mul_forward_ref(a, b, ref);
      CHECK(same_bits(sel, ref));
    }
}

TEST(mul_backward_matches_reference_in_regions) {
  std::mt19937 rng(2);
  const int64_t reps = 2, n = 2, batch = n * reps;
  for (const Shape& s : shapes())
    for (const Pattern& p : kPatterns) {
      const Tensor a = random_tensor(sub(s, p.a, n), rng), b = random_tensor(sub(s, p.b, n), rng);
      Regions rs;
      Tensor g0, gnan;
      region_grads(s, batch, rng, rs, g0, gnan);
      const std::string what = std::string("backward ") + p.name + " " + s.str();
      for (int which = 0; which < 2; ++which) {  // ga alone, gb alone
        const Tensor init = random_tensor(sub(s, which == 0 ? p.a : p.b, batch), rng);
        compare(
            init,
            [&](const Ctx& ctx, Tensor& gi) {
              mul_backward(ctx, gnan, rs, a, b, which == 0 ? &gi : nullptr,
                           which == 1 ? &gi : nullptr, reps);
            },
            [&](Tensor& gi) {
              mul_backward_ref(g0, a, b, which == 0 ? &gi : nullptr, which == 1 ? &gi : nullptr,
                               reps);
            },
            1e-5, what + (which == 0 ? " ga" : " gb"));
        Tensor sel = init.clone(), ref = init.clone();
        mul_backward(kRef, g0, rs, a, b, which == 0 ? &sel : nullptr, which == 1 ? &sel : nullptr,
                     reps);
        mul_backward_ref(g0, a, b, which == 0 ? &ref : nullptr, which == 1 ? &ref : nullptr, reps);
        CHECK(same_bits(sel, ref));
      }
    }
}

TEST(mul_of_one_tensor_with_itself) {
  std::mt19937 rng(3);
  const int64_t reps = 3, n = 1, batch = n * reps;
  for (const Shape& s : shapes()) {
    const Tensor x = random_tensor(s.with_n(n), rng);
    Regions rs;
    Tensor g0, gnan;
    region_grads(s, batch, rng, rs, g0, gnan);
    compare(
        random_tensor(s.with_n(batch), rng),
        [&](const Ctx& ctx, Tensor& gi) { mul_backward(ctx, gnan, rs, x, x, &gi, &gi, reps); },
        [&](Tensor& gi) { mul_backward_ref(g0, x, x, &gi, &gi, reps); }, 1e-5,
        "mul(x, x) " + s.str());
  }
}

PYDECONV_TEST_MAIN()
