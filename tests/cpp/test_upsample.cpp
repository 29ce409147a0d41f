// The fast upsample kernels (nearest, bilinear with both align_corners) against their reference
// twins on odd shapes at 1 and 2 threads (same bits), the backward limited to each sample's
// region (NaN outside it must not be read) with reps > 1, and ctx.reference selecting the twin.
#include "kernel_compare.hpp"

using namespace pydeconv;
using namespace pydeconv::kernels;
using namespace kcmp;

namespace {

std::vector<Shape> shapes() {
  return {Shape::nchw(1, 1, 1, 1), Shape::nchw(1, 3, 5, 7), Shape::nchw(1, 13, 7, 6),
          Shape::nchw(1, 17, 33, 35)};
}

std::vector<UpsampleGeom> geoms() {
  std::vector<UpsampleGeom> out;
  for (bool bil : {false, true})
    for (bool ac : {false, true}) {
      if (!bil && ac) continue;
      for (auto s : {std::pair<int64_t, int64_t>{2, 2}, {3, 2}, {1, 3}}) {
        UpsampleGeom u;
        u.sh = s.first;
        u.sw = s.second;
        u.bilinear = bil;
        u.align_corners = ac;
        out.push_back(u);
      }
    }
  return out;
}

std::string name(const UpsampleGeom& u, const Shape& s) {
  return std::string(u.bilinear ? (u.align_corners ? "bilinear_ac" : "bilinear") : "nearest") +
         " " + std::to_string(u.sh) + "x" + std::to_string(u.sw) + " " + s.str();
}

}  // namespace

TEST(upsample_forward_matches_reference) {
  std::mt19937 rng(1);
  for (const Shape& s : shapes())
    for (const UpsampleGeom& u : geoms()) {
      const Tensor x = random_tensor(s.with_n(2), rng);
      const Shape os = Shape::nchw(2, s.c, s.h * u.sh, s.w * u.sw);
      compare(
          Tensor(os, 0.f), [&](const Ctx& ctx, Tensor& y) { upsample_forward(ctx, x, u, y); },
          [&](Tensor& y) { upsample_forward_ref(x, u, y); }, 1e-6, "forward " + name(u, s));
      Tensor sel(os, 0.f), ref(os, 0.f);
      upsample_forward(kRef, x, u, sel);
      upsample_forward_ref(x, u, ref);
      CHECK(same_bits(sel, ref));
    }
}

TEST(upsample_backward_matches_reference_in_regions) {
  std::mt19937 rng(2);
  const int64_t reps = 2, batch = 2 * reps;
  for (const Shape& s : shapes())
    for (const UpsampleGeom& u : geoms()) {
      const Shape os = Shape::nchw(1, s.c, s.h * u.sh, s.w * u.sw);
      Regions rs;
      Tensor g0, gnan;
      region_grads(os, batch, rng, rs, g0, gnan);
      const Tensor init = random_tensor(s.with_n(batch), rng);
      compare(
          init, [&](const Ctx& ctx, Tensor& gin) { upsample_backward(ctx, gnan, rs, u, gin); },
          [&](Tensor& gin) { upsample_backward_ref(g0, u, gin); }, 1e-5, "backward " + name(u, s));
      Tensor sel = init.clone(), ref = init.clone();
      upsample_backward(kRef, g0, rs, u, sel);
      upsample_backward_ref(g0, u, ref);
      CHECK(same_bits(sel, ref));
    }
}

PYDECONV_TEST_MAIN()
