// conv_transpose2d and layer_norm kernels against their reference twins (kernels/ref/), on odd
// shapes and geometries (groups, output padding, dilation, asymmetric padding), at 1 and 2
// threads, with region-limited gradients (NaN outside each sample's region for the fast kernels:
// they must not read there; the last sample's region is empty) and reps > 1; both thread counts
// must give the same bits, and the entry points must select their twin under ctx.reference.
#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include "kernel_compare.hpp"

using namespace pydeconv;
using namespace pydeconv::kernels;
using namespace kcmp;

namespace {

struct ConvT {
  int64_t cin, cout, h, w, kh, kw, sh, sw, pt, pl, pb, pr, oph, opw, dh, dw, groups;
};

// Odd geometries; the last ones large enough for the threaded GEMM paths. Stride 1 with 6+
// output channels per group takes conv2d_backward's flipped-kernel path, the others GEMM +
// col2im.
const ConvT kConvT[] = {
    {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1},
    {3, 5, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {8, 16, 7, 5, 3, 3, 1, 1, 0, 1, 2, 1, 0, 0, 1, 1, 1},
    {13, 6, 5, 6, 4, 4, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {6, 9, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 3},
    {3, 4, 4, 5, 3, 3, 3, 3, 0, 1, 0, 0, 2, 1, 1, 1, 1},
    {3, 4, 7, 5, 3, 3, 1, 1, 2, 1, 0, 3, 1, 1, 2, 2, 1},
    {3, 6, 5, 7, 2, 5, 2, 1, 1, 0, 0, 2, 0, 0, 1, 1, 1},
    {13, 13, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 13},
    {40, 32, 17, 13, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 1, 1, 1},
    {24, 24, 19, 21, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1},
};

Window2d window(const ConvT& c) {
  Window2d g;
  g.kh = c.kh, g.kw = c.kw, g.sh = c.sh, g.sw = c.sw, g.dh = c.dh, g.dw = c.dw;
  g.pt = c.pt, g.pl = c.pl, g.pb = c.pb, g.pr = c.pr;
  return g;
}

Shape out_shape(const ConvT& c, int64_t n) {
  return Shape::nchw(n, c.cout, (c.h - 1) * c.sh - c.pt - c.pb + c.dh * (c.kh - 1) + c.oph + 1,
                     (c.w - 1) * c.sw - c.pl - c.pr + c.dw * (c.kw - 1) + c.opw + 1);
}

std::string name(const ConvT& c) {
  return "conv_transpose2d " + std::to_string(c.cin) + "->" + std::to_string(c.cout) + " " +
         std::to_string(c.h) + "x" + std::to_string(c.w) + " k" + std::to_string(c.kh) + "x" +
         std::to_string(c.kw) + " s" + std::to_string(c.sh) + " g" + std::to_string(c.groups);
}

}  // namespace

TEST(conv_transpose2d_forward_matches_reference) {
  std::mt19937 rng(1);
  for (const ConvT& c : kConvT) {
    const Window2d g = window(c);
    const Tensor x = random_tensor(Shape::nchw(2, c.cin, c.h, c.w), rng);
    const Tensor wt = random_tensor(Shape::nchw(c.cin, c.cout / c.groups, c.kh, c.kw), rng, 0.3f);
    const Tensor bias = random_tensor(Shape::nchw(c.cout, 1, 1, 1), rng);
    for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
      const std::string what = name(c) + (b ? " bias" : "");
      // Garbage in the output first: the forward overwrites all of it.
      const Tensor init = random_tensor(out_shape(c, 2), rng, 100.f);
      const ConvPacked pk = conv2d_pack_backward(wt, g, c.groups);
      compare(
          init,
          [&](const Ctx& ctx, Tensor& y) {
            conv_transpose2d_forward(ctx, x, wt, b, g, c.groups, y, &pk);
          },
          [&](Tensor& y) { conv_transpose2d_forward_ref(x, wt, b, g, c.groups, y); }, 1e-5, what);
      Tensor sel = init.clone(), r = init.clone();
      conv_transpose2d_forward(kRef, x, wt, b, g, c.groups, sel, &pk);
      conv_transpose2d_forward_ref(x, wt, b, g, c.groups, r);
      CHECK(same_bits(sel, r));
      Tensor unpacked = init.clone(), f = init.clone();  // packed per call when not given
      conv_transpose2d_forward(kFast1, x, wt, b, g, c.groups, unpacked);
      conv_transpose2d_forward(kFast1, x, wt, b, g, c.groups, f, &pk);
      CHECK(same_bits(unpacked, f));
    }
  }
}

TEST(conv_transpose2d_backward_matches_reference_in_regions) {
  std::mt19937 rng(2);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const ConvT& c : kConvT) {
    const Window2d g = window(c);
    const Tensor wt = random_tensor(Shape::nchw(c.cin, c.cout / c.groups, c.kh, c.kw), rng, 0.3f);
    const ConvPacked pk = conv2d_pack_forward(wt, c.groups);
    Regions rs;
    const Tensor gn = region_grad(out_shape(c, 1), 6, rng, rs, nan, halves_and_points);
    const Tensor gz = zero_outside(gn, rs);
    const Tensor init = random_tensor(Shape::nchw(6, c.cin, c.h, c.w), rng);
    const std::string what = name(c) + " backward";
    compare(
        init,
        [&](const Ctx& ctx, Tensor& gin) {
          conv_transpose2d_backward(ctx, gn, rs, wt, g, c.groups, gin, &pk);
        },
        [&](Tensor& gin) { conv_transpose2d_backward_ref(gz, wt, g, c.groups, gin); }, 1e-5, what);
    Tensor sel = init.clone(), r = init.clone();
    conv_transpose2d_backward(kRef, gz, rs, wt, g, c.groups, sel, &pk);
    conv_transpose2d_backward_ref(gz, wt, g, c.groups, r);
    CHECK(same_bits(sel, r));
    // Only the rectangle each region reaches changes (conv_transpose2d_reach).
    Tensor f = init.clone();
    conv_transpose2d_backward(kFast1, gn, rs, wt, g, c.groups, f);
    for (int64_t b = 0; b < 6; ++b) {
      const Region q = conv_transpose2d_reach(rs[b], g, init.shape());
      for (int64_t ch = 0; ch < c.cin; ++ch)
        for (int64_t y = 0; y < c.h; ++y)
          for (int64_t x = 0; x < c.w; ++x) {
            const bool inside = y >= q.y0 && y < q.y1 && x >= q.x0 && x < q.x1;
            if (!inside) CHECK(f.plane(b, ch)[y * c.w + x] == init.plane(b, ch)[y * c.w + x]);
          }
    }
  }
}

TEST(layer_norm_matches_reference) {
  std::mt19937 rng(3);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Shape shapes[] = {Shape::nchw(1, 1, 1, 1), Shape::nchw(1, 3, 5, 7),
                          Shape::nchw(1, 13, 11, 6), Shape::nchw(1, 96, 23, 29)};
  for (const Shape& s : shapes)
    for (double eps : {1e-5, 0.5}) {
      const std::string what = "layer_norm " + s.str() + " eps " + std::to_string(eps);
      const Tensor x = random_tensor(s.with_n(3), rng, 2.f);
      const Tensor scale = random_tensor(Shape::nchw(s.c, 1, 1, 1), rng);
      const Tensor bias = random_tensor(Shape::nchw(s.c, 1, 1, 1), rng);
      for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
        compare(
            Tensor(x.shape(), 7.f),
            [&](const Ctx& ctx, Tensor& y) { layer_norm_forward(ctx, x, scale.data(), b, eps, y); },
            [&](Tensor& y) { layer_norm_forward_ref(x, scale.data(), b, eps, y); }, 1e-5, what);
        Tensor sel(x.shape(), 0.f), r(x.shape(), 0.f);
        layer_norm_forward(kRef, x, scale.data(), b, eps, sel);
        layer_norm_forward_ref(x, scale.data(), b, eps, r);
        CHECK(same_bits(sel, r));
      }
      const int64_t reps = 2;
      Regions rs;
      const Tensor gn = region_grad(s, 3 * reps, rng, rs, nan, halves_and_points);
      const Tensor gz = zero_outside(gn, rs);
      const Tensor init = random_tensor(gn.shape(), rng);
      compare(
          init,
          [&](const Ctx& ctx, Tensor& gin) {
            layer_norm_backward(ctx, x, gn, rs, scale.data(), eps, gin, reps);
          },
          [&](Tensor& gin) { layer_norm_backward_ref(x, gz, scale.data(), eps, gin, reps); }, 1e-5,
          what + " backward");
      Tensor sel = init.clone(), r = init.clone();
      layer_norm_backward(kRef, x, gz, rs, scale.data(), eps, sel, reps);
      layer_norm_backward_ref(x, gz, scale.data(), eps, r, reps);
      CHECK(same_bits(sel, r));
    }
}

// The depthwise kernels (kernels/depthwise.cpp) through conv2d_forward / conv2d_backward's
// dispatch, against the conv2d twins; with the fused ReLU (in place and into another tensor, with
// its mask) and region-limited gradients.
TEST(depthwise_conv2d_matches_reference) {
  std::mt19937 rng(4);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Dw {
    int64_t c, h, w, k, sh, sw, pt, pl, pb, pr;
  };
  const Dw cases[] = {{2, 1, 1, 3, 1, 1, 1, 1, 1, 1},     {13, 7, 8, 3, 2, 2, 1, 1, 1, 1},
                      {7, 9, 6, 5, 1, 1, 2, 0, 1, 3},     {6, 11, 13, 5, 2, 2, 2, 2, 2, 2},
                      {5, 7, 9, 3, 1, 2, 0, 1, 2, 1},     {3, 12, 5, 5, 2, 1, 0, 0, 0, 0},
                      {144, 28, 28, 3, 1, 1, 1, 1, 1, 1}, {96, 29, 27, 3, 2, 2, 0, 1, 1, 0}};
  for (const Dw& d : cases) {
    Window2d g;
    g.kh = g.kw = d.k, g.sh = d.sh, g.sw = d.sw, g.pt = d.pt, g.pl = d.pl, g.pb = d.pb, g.pr = d.pr;
    const Tensor wt = random_tensor(Shape::nchw(d.c, 1, d.k, d.k), rng, 0.5f);
    CHECK(depthwise_fits(wt.shape(), g, d.c));
    const Tensor bias = random_tensor(Shape::nchw(d.c, 1, 1, 1), rng);
    const Tensor x = random_tensor(Shape::nchw(2, d.c, d.h, d.w), rng);
    const Shape os = Shape::nchw(2, d.c, g.out_h(d.h), g.out_w(d.w));
    const std::string what = "depthwise c" + std::to_string(d.c) + " k" + std::to_string(d.k) +
                             " s" + std::to_string(d.sh) + "x" + std::to_string(d.sw);
    const ConvPacked pf = conv2d_pack_forward(wt, d.c);
    CHECK(!pf.depthwise.empty());
    compare(
        Tensor(os, 3.f),
        [&](const Ctx& ctx, Tensor& y) { conv2d_forward(ctx, x, wt, bias.data(), g, d.c, y, &pf); },
        [&](Tensor& y) { conv2d_forward_ref(x, wt, bias.data(), g, d.c, y); }, 1e-5, what);
    // The fused ReLU: into another tensor with its mask, and in place.
    Tensor y(os), relu(os), inplace(os);
    TensorT<uint8_t> mask(os);
    conv2d_forward(kFast2, x, wt, bias.data(), g, d.c, y, &pf, &relu, &mask);
    conv2d_forward(kFast1, x, wt, bias.data(), g, d.c, inplace, &pf, &inplace);
    for (int64_t i = 0; i < y.numel(); ++i) {
      CHECK(relu.data()[i] == (y.data()[i] > 0 ? y.data()[i] : 0.f));
      CHECK(mask.data()[i] == (y.data()[i] > 0));
      CHECK(inplace.data()[i] == relu.data()[i]);
    }
    const ConvPacked pb = conv2d_pack_backward(wt, g, d.c);
    CHECK(!pb.depthwise.empty());
    Regions rs;
    const Tensor gn = region_grad(os.with_n(1), 6, rng, rs, nan, halves_and_points);
    const Tensor gz = zero_outside(gn, rs);
    const Tensor init = random_tensor(Shape::nchw(6, d.c, d.h, d.w), rng);
    compare(
        init,
        [&](const Ctx& ctx, Tensor& gin) { conv2d_backward(ctx, gn, rs, wt, g, d.c, gin, &pb); },
        [&](Tensor& gin) { conv2d_backward_ref(gz, wt, g, d.c, gin, 1); }, 1e-5,
        what + " backward");
  }
}

PYDECONV_TEST_MAIN()
