// The fast conv2d kernels (implicit-im2col GEMM forward; the transposed conv as a flipped-kernel
// forward conv for stride 1, GEMM + col2im when strided) against the naive reference kernels:
// strides, asymmetric padding, dilation, groups incl. depthwise, 1x1, odd sizes, batch > 1,
// per-sample gradient regions, 1 and 2 threads, portable and AVX2 micro-kernels, pre-packed and
// per-call packed weights. Tolerances come from the float error bound of each sum:
// |error| <= (K + 4) * 2^-24 * sum |terms|, with sum |terms| computed by the reference kernel on
// absolute values.
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../csrc/src/kernels/direct_conv.hpp"
#include "../../csrc/src/kernels/winograd.hpp"
#include "check.hpp"
#include "isa_modes.hpp"
#include "kernels/gemm.hpp"
#include "kernels/kernels.hpp"

using namespace pydeconv;

namespace {

struct ConvCase {
  const char* name;
  int64_t n, c, h, w, oc;
  Window2d g;
  int64_t groups;
};

Window2d window(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb,
                int64_t pr, int64_t dh = 1, int64_t dw = 1) {
  Window2d g;
  g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw, g.pt = pt, g.pl = pl, g.pb = pb, g.pr = pr;
  g.dh = dh, g.dw = dw;
  return g;
}

// The stride-1 transposed conv runs as a flipped-kernel conv when a group has >= 6 input
// channels and as GEMM + col2im below that: the stride-1 cases cover both sides.
const ConvCase kCases[] = {
    {"plain3x3", 1, 3, 7, 7, 4, window(3, 3, 1, 1, 0, 0, 0, 0), 1},
    {"same_pad_batch", 3, 5, 9, 11, 7, window(3, 3, 1, 1, 1, 1, 1, 1), 1},
    {"same_pad_flipped", 3, 6, 9, 11, 7, window(3, 3, 1, 1, 1, 1, 1, 1), 1},
    {"asym_pad", 2, 7, 13, 10, 5, window(3, 5, 1, 1, 2, 0, 1, 3), 1},
    {"asym_pad_col2im", 2, 3, 13, 10, 5, window(3, 5, 1, 1, 2, 0, 1, 3), 1},
    {"pad_beyond_kernel", 1, 6, 5, 6, 3, window(2, 2, 1, 1, 3, 2, 3, 2), 1},
    {"stride2_asym", 2, 3, 13, 13, 4, window(7, 7, 2, 2, 1, 2, 3, 1), 1},
    {"stride_gt_kernel", 1, 4, 13, 13, 3, window(2, 2, 3, 3, 1, 0, 1, 0), 1},
    {"stride_hw", 2, 3, 11, 17, 5, window(3, 2, 2, 3, 1, 0, 0, 1), 1},
    {"dilation", 2, 8, 13, 7, 4, window(3, 3, 1, 1, 2, 3, 1, 0, 2, 3), 1},
    {"dilation_col2im", 2, 3, 13, 7, 4, window(3, 3, 1, 1, 2, 3, 1, 0, 2, 3), 1},
    {"dilation_stride", 1, 3, 15, 14, 2, window(3, 3, 2, 2, 2, 2, 2, 2, 2, 2), 1},
    {"groups", 2, 6, 7, 7, 9, window(3, 3, 1, 1, 1, 1, 1, 1), 3},
    {"groups_flipped", 2, 14, 9, 7, 6, window(3, 3, 1, 1, 0, 1, 2, 1), 2},
    {"depthwise", 2, 13, 7, 7, 13, window(3, 3, 1, 1, 1, 1, 1, 1), 13},
    {"depthwise_stride", 1, 13, 9, 8, 26, window(3, 3, 2, 2, 1, 1, 1, 1), 13},
    {"pointwise", 2, 13, 7, 5, 6, window(1, 1, 1, 1, 0, 0, 0, 0), 1},
    {"pointwise_stride", 1, 8, 9, 9, 5, window(1, 1, 2, 2, 0, 0, 0, 0), 1},
    {"one_pixel", 3, 1, 1, 1, 1, window(1, 1, 1, 1, 0, 0, 0, 0), 1},
    {"rect_kernel", 1, 3, 7, 13, 4, window(1, 5, 2, 1, 0, 2, 0, 2), 1},
    // Strided rows of 16+ outputs: whole panel rows gathered by the stride-2 and general
    // strided copies (ZFNet's 7x7/2 and 5x5/2 layers), next to edge panels that straddle rows.
    {"stride2_wide", 1, 3, 41, 45, 8, window(7, 7, 2, 2, 1, 1, 1, 1), 1},
    {"stride2_wide_nopad", 2, 4, 37, 39, 6, window(5, 5, 2, 2, 0, 0, 0, 0), 1},
    {"stride3_wide", 1, 2, 20, 60, 5, window(3, 3, 3, 3, 1, 1, 1, 1), 1},
    // GEMM edges: m past MR/MC, k past KC (several KC blocks), n past several NR panels.
    {"gemm_blocks", 2, 32, 13, 13, 70, window(3, 3, 1, 1, 1, 1, 1, 1), 1},
    {"wide_tall", 1, 40, 23, 37, 301, window(3, 3, 1, 1, 1, 1, 1, 1), 1},
};

Tensor random_tensor(const Shape& s, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Tensor t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = u(rng);
  return t;
}

Tensor abs_of(const Tensor& t) {
  Tensor a = t.clone();
  for (int64_t i = 0; i < a.numel(); ++i) a.data()[i] = std::fabs(a.data()[i]);
  return a;
}

bool same_bits(const Tensor& x, const Tensor& y) {
  return x.numel() == y.numel() &&
         std::memcmp(x.data(), y.data(), static_cast<size_t>(x.numel()) * sizeof(float)) == 0;
}

// |got - want| <= (terms + 4) * u * bound + tiny, element by element.
void check_close(const Tensor& got, const Tensor& want, const Tensor& bound, int64_t terms,
                 const std::string& what) {
  const double u = std::ldexp(1.0, -24);
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double tol = (terms + 4) * u * bound.data()[i] + 1e-30;
    if (!(std::fabs(double(got.data()[i]) - want.data()[i]) <= tol))
      check::fail_at(__FILE__, __LINE__,
                     what + " at " + std::to_string(i) + ": got " + std::to_string(got.data()[i]) +
                         " want " + std::to_string(want.data()[i]));
  }
}

Shape out_shape(const ConvCase& cs) {
  return Shape::nchw(cs.n, cs.oc, cs.g.out_h(cs.h), cs.g.out_w(cs.w));
}

void check_forward(const ConvCase& cs, std::mt19937& rng) {
  const Tensor in = random_tensor(Shape::nchw(cs.n, cs.c, cs.h, cs.w), rng);
  const Tensor w = random_tensor(Shape::nchw(cs.oc, cs.c / cs.groups, cs.g.kh, cs.g.kw), rng);
  const Tensor bias = random_tensor(Shape::vec(cs.oc), rng);
  const Shape os = out_shape(cs);
  Tensor want(os), bound(os);
  kernels::conv2d_forward_ref(in, w, bias.data(), cs.g, cs.groups, want);
  kernels::conv2d_forward_ref(abs_of(in), abs_of(w), abs_of(bias).data(), cs.g, cs.groups, bound);
  const int64_t terms = cs.c / cs.groups * cs.g.kh * cs.g.kw + 1;
  const kernels::ConvPacked packed = kernels::conv2d_pack_forward(w, cs.groups);
  for (const std::string& isa : isa_modes()) {
    set_isa(isa);
    const std::string what = std::string(cs.name) + " forward " + kernels::sgemm_isa();
    Tensor one(os, 7.0f), two(os, 7.0f), unpacked(os, 7.0f);
    kernels::conv2d_forward(Ctx{1, false}, in, w, bias.data(), cs.g, cs.groups, one, &packed);
    kernels::conv2d_forward(Ctx{2, false}, in, w, bias.data(), cs.g, cs.groups, two, &packed);
    kernels::conv2d_forward(Ctx{2, false}, in, w, bias.data(), cs.g, cs.groups, unpacked);
    check_close(one, want, bound, terms, what);
    if (!same_bits(one, two)) check::fail_at(__FILE__, __LINE__, what + ": 2 threads differ");
    if (!same_bits(two, unpacked)) check::fail_at(__FILE__, __LINE__, what + ": packing differs");
    Tensor nobias(os), nobias_want(os);
    kernels::conv2d_forward(Ctx{2, false}, in, w, nullptr, cs.g, cs.groups, nobias, &packed);
    kernels::conv2d_forward_ref(in, w, nullptr, cs.g, cs.groups, nobias_want);
    check_close(nobias, nobias_want, bound, terms, what + " no bias");
  }
  set_isa("auto");
  Tensor ref_ctx(os);
  kernels::conv2d_forward(Ctx{2, true}, in, w, bias.data(), cs.g, cs.groups, ref_ctx);
  CHECK(same_bits(ref_ctx, want));
}

// Per-sample regions of gout that may be non-zero: the whole map, an inner rectangle, nothing,
// one pixel (at a corner), cycling over the samples of the gradient batch.
Regions make_regions(const Shape& gs) {
  Regions rs;
  for (int64_t b = 0; b < gs.n; ++b) {
    switch (b % 4) {
      case 0: rs.push_back(Region::full(gs)); break;
      case 1:
        rs.push_back({gs.h / 3, std::max<int64_t>(gs.h / 3 + 1, gs.h - 1), gs.w / 2, gs.w});
        break;
      case 2: rs.push_back({0, 0, 0, 0}); break;
      default: rs.push_back({gs.h - 1, gs.h, 0, 1}); break;
    }
  }
  return rs;
}

// A random gout that keeps the contract: zero outside each sample's region.
Tensor region_gout(const Shape& gs, const Regions& rs, std::mt19937& rng) {
  Tensor gout = random_tensor(gs, rng);
  for (int64_t b = 0; b < gs.n; ++b)
    for (int64_t c = 0; c < gs.c; ++c)
      for (int64_t y = 0; y < gs.h; ++y)
        for (int64_t x = 0; x < gs.w; ++x) {
          const Region& r = rs[b];
          if (y < r.y0 || y >= r.y1 || x < r.x0 || x >= r.x1) gout.plane(b, c)[y * gs.w + x] = 0.0f;
        }
  return gout;
}

void check_backward(const ConvCase& cs, int64_t reps, std::mt19937& rng) {
  const Tensor w = random_tensor(Shape::nchw(cs.oc, cs.c / cs.groups, cs.g.kh, cs.g.kw), rng);
  const Shape gs = out_shape(cs).with_n(cs.n * reps);
  const Shape is = Shape::nchw(cs.n * reps, cs.c, cs.h, cs.w);
  const Regions rs = make_regions(gs);
  const Tensor gout = region_gout(gs, rs, rng);
  const Tensor gin0 = random_tensor(is, rng);  // backward accumulates into gin
  Tensor want = gin0.clone(), bound = abs_of(gin0);
  kernels::conv2d_backward_ref(gout, w, cs.g, cs.groups, want, reps);
  kernels::conv2d_backward_ref(abs_of(gout), abs_of(w), cs.g, cs.groups, bound, reps);
  const int64_t terms = cs.oc / cs.groups * cs.g.kh * cs.g.kw + 1;
  const kernels::ConvPacked packed = kernels::conv2d_pack_backward(w, cs.g, cs.groups);
  for (const std::string& isa : isa_modes()) {
    set_isa(isa);
    const std::string what = std::string(cs.name) + " backward " + kernels::sgemm_isa() +
                             " reps=" + std::to_string(reps);
    Tensor one = gin0.clone(), two = gin0.clone(), unpacked = gin0.clone(), again = gin0.clone();
    kernels::conv2d_backward(Ctx{1, false}, gout, rs, w, cs.g, cs.groups, one, &packed);
    kernels::conv2d_backward(Ctx{2, false}, gout, rs, w, cs.g, cs.groups, two, &packed);
    kernels::conv2d_backward(Ctx{2, false}, gout, rs, w, cs.g, cs.groups, again, &packed);
    kernels::conv2d_backward(Ctx{2, false}, gout, rs, w, cs.g, cs.groups, unpacked);
    check_close(one, want, bound, terms, what);
    if (!same_bits(one, two)) check::fail_at(__FILE__, __LINE__, what + ": 2 threads differ");
    if (!same_bits(two, again)) check::fail_at(__FILE__, __LINE__, what + ": not repeatable");
    if (!same_bits(two, unpacked)) check::fail_at(__FILE__, __LINE__, what + ": packing differs");
  }
  set_isa("auto");
  Tensor ref_ctx = gin0.clone();
  kernels::conv2d_backward(Ctx{2, true}, gout, rs, w, cs.g, cs.groups, ref_ctx);
  CHECK(same_bits(ref_ctx, want));
}

}  // namespace

TEST(conv2d_forward_vs_reference) {
  std::mt19937 rng(3);
  for (const ConvCase& cs : kCases) check_forward(cs, rng);
}

TEST(conv2d_backward_vs_reference) {
  std::mt19937 rng(5);
  for (const ConvCase& cs : kCases) check_backward(cs, 1, rng);
}

// A gradient batch of several start signals per image (reps > 1) with mixed regions.
TEST(conv2d_backward_batched_regions) {
  std::mt19937 rng(9);
  for (const ConvCase& cs : kCases) {
    const std::string name = cs.name;
    if (name == "same_pad_flipped" || name == "asym_pad_col2im" || name == "stride2_asym" ||
        name == "groups_flipped" || name == "depthwise")
      check_backward(cs, 3, rng);
  }
}

// So many input channels that the result buffer (8 MiB) holds fewer columns than one sample's
// region: the region is split by rows over several GEMMs.
TEST(conv2d_backward_split_regions) {
  std::mt19937 rng(13);
  check_backward({"split", 2, 6144, 19, 19, 2, window(3, 3, 1, 1, 1, 1, 1, 1), 1}, 1, rng);
}

// Adjoint identity on the fast kernels alone: <conv(x), y> == <x, conv^T(y)>.
TEST(conv2d_adjoint) {
  std::mt19937 rng(11);
  for (const ConvCase& cs : kCases) {
    const Tensor x = random_tensor(Shape::nchw(cs.n, cs.c, cs.h, cs.w), rng);
    const Tensor w = random_tensor(Shape::nchw(cs.oc, cs.c / cs.groups, cs.g.kh, cs.g.kw), rng);
    const Shape os = out_shape(cs);
    const Tensor y = random_tensor(os, rng);
    Tensor ax(os), aty(x.shape(), 0.0f);
    kernels::conv2d_forward(Ctx{2, false}, x, w, nullptr, cs.g, cs.groups, ax);
    kernels::conv2d_backward(Ctx{2, false}, y, Regions(cs.n, Region::full(os)), w, cs.g, cs.groups,
                             aty);
    double lhs = 0, rhs = 0, scale = 0;
    for (int64_t i = 0; i < ax.numel(); ++i) {
      lhs += double(ax.data()[i]) * y.data()[i];
      scale += std::fabs(double(ax.data()[i]) * y.data()[i]);
    }
    for (int64_t i = 0; i < aty.numel(); ++i) {
      rhs += double(aty.data()[i]) * x.data()[i];
      scale += std::fabs(double(aty.data()[i]) * x.data()[i]);
    }
    if (!(std::fabs(lhs - rhs) <= 1e-5 * scale + 1e-12))
      check::fail_at(__FILE__, __LINE__,
                     std::string(cs.name) + ": <Ax,y>=" + std::to_string(lhs) +
                         " <x,A^T y>=" + std::to_string(rhs));
  }
}

// Winograd F(2x2, 3x3) and F(4x4, 3x3), each forced in turn: forward and the transposed conv
// (with per-sample regions) against the reference kernels. The transforms add a few roundings
// per term, so the bound is 8x the direct GEMM's for F(2x2); F(4x4)'s coefficients (up to 8 and
// rounded sixths) make it 32x. Shapes cover odd sizes, asymmetric and large padding, one tile
// block and several (with threads taking whole blocks), tile rows split over blocks, and 1 vs 2
// threads bit for bit.
const ConvCase kWinoCases[] = {
    {"wino_small", 2, 16, 9, 11, 16, window(3, 3, 1, 1, 1, 1, 1, 1), 1},
    {"wino_asym", 3, 24, 13, 10, 30, window(3, 3, 1, 1, 2, 0, 1, 2), 1},
    {"wino_valid", 1, 17, 12, 15, 19, window(3, 3, 1, 1, 0, 0, 0, 0), 1},
    {"wino_big_pad", 1, 16, 5, 6, 16, window(3, 3, 1, 1, 2, 2, 2, 2), 1},
    {"wino_blocks", 1, 64, 70, 71, 20, window(3, 3, 1, 1, 1, 1, 1, 1), 1},
    {"wino_wide_rows", 1, 16, 3, 2101, 16, window(3, 3, 1, 1, 1, 1, 1, 1), 1},
    {"wino_deep", 2, 512, 9, 9, 40, window(3, 3, 1, 1, 1, 1, 1, 1), 1},
};

void check_winograd(const ConvCase& cs, int mode, int64_t reps, std::mt19937& rng) {
  const std::string name = std::string(cs.name) + " F(" + std::to_string(mode) + ") " + isa();
  const int64_t slack = mode == 4 ? 32 : 8;
  set_winograd_mode(mode);
  const Tensor in = random_tensor(Shape::nchw(cs.n, cs.c, cs.h, cs.w), rng);
  const Tensor w = random_tensor(Shape::nchw(cs.oc, cs.c, 3, 3), rng);
  const Tensor bias = random_tensor(Shape::vec(cs.oc), rng);
  const kernels::ConvPacked packed = kernels::conv2d_pack_forward(w, 1);
  const int64_t fterms = cs.c * 9 + 1, bterms = cs.oc * 9 + 1;
  // Forward (the dispatcher picks Winograd for these shapes; the direct path with it off).
  const Shape os = out_shape(cs);
  Tensor want(os), bound(os);
  kernels::conv2d_forward_ref(in, w, bias.data(), cs.g, 1, want);
  kernels::conv2d_forward_ref(abs_of(in), abs_of(w), abs_of(bias).data(), cs.g, 1, bound);
  Tensor one(os, 7.0f), two(os, 7.0f), direct(os, 7.0f);
  kernels::conv2d_forward(Ctx{1, false}, in, w, bias.data(), cs.g, 1, one, &packed);
  kernels::conv2d_forward(Ctx{2, false}, in, w, bias.data(), cs.g, 1, two, &packed);
  set_winograd_mode(0);
  kernels::conv2d_forward(Ctx{2, false}, in, w, bias.data(), cs.g, 1, direct, &packed);
  set_winograd_mode(mode);
  check_close(one, want, bound, slack * fterms, name + " winograd forward");
  check_close(direct, want, bound, fterms, name + " direct forward");
  if (!same_bits(one, two)) check::fail_at(__FILE__, __LINE__, name + ": 2 threads differ");
  // The dispatcher did take Winograd: its result is not the direct GEMM's bit for bit.
  if (same_bits(one, direct)) check::fail_at(__FILE__, __LINE__, name + ": Winograd not used");
  // Transposed conv over regions.
  const Shape gs = os.with_n(cs.n * reps);
  const Regions rs = make_regions(gs);
  const Tensor gout = region_gout(gs, rs, rng);
  const Shape is = Shape::nchw(cs.n * reps, cs.c, cs.h, cs.w);
  const Tensor gin0 = random_tensor(is, rng);
  Tensor bwant = gin0.clone(), bbound = abs_of(gin0);
  kernels::conv2d_backward_ref(gout, w, cs.g, 1, bwant, reps);
  kernels::conv2d_backward_ref(abs_of(gout), abs_of(w), cs.g, 1, bbound, reps);
  Tensor b1 = gin0.clone(), b2 = gin0.clone();
  CHECK(kernels::conv2d_backward_winograd(Ctx{1, false}, gout, rs, cs.g, 1, b1, packed));
  CHECK(kernels::conv2d_backward_winograd(Ctx{2, false}, gout, rs, cs.g, 1, b2, packed));
  check_close(b1, bwant, bbound, slack * bterms, name + " winograd backward");
  if (!same_bits(b1, b2)) check::fail_at(__FILE__, __LINE__, name + ": backward 2 threads differ");
  // Off, or with reference kernels, the entry point declines and leaves gin alone.
  Tensor untouched = gin0.clone();
  CHECK(!kernels::conv2d_backward_winograd(Ctx{2, true}, gout, rs, cs.g, 1, untouched, packed));
  set_winograd_mode(0);
  CHECK(!kernels::conv2d_backward_winograd(Ctx{2, false}, gout, rs, cs.g, 1, untouched, packed));
  set_winograd_mode(1);
  CHECK(same_bits(untouched, gin0));
}

TEST(winograd_vs_reference) {
  // On every instruction set this CPU has (the transforms come from the kernel table).
  for (const std::string& isa : isa_modes()) {
    set_isa(isa);
    std::mt19937 rng(17);
    for (int mode : {2, 4})
      for (const ConvCase& cs : kWinoCases) check_winograd(cs, mode, cs.n == 1 ? 4 : 1, rng);
  }
  set_isa("auto");
}

// Geometry it refuses (strided, dilated, grouped, not 3x3), and tiny regions it leaves to the
// direct GEMM.
TEST(winograd_dispatch) {
  CHECK(kernels::winograd_geometry(window(3, 3, 1, 1, 1, 1, 1, 1), 1));
  CHECK(!kernels::winograd_geometry(window(3, 3, 2, 2, 1, 1, 1, 1), 1));
  CHECK(!kernels::winograd_geometry(window(3, 3, 1, 1, 1, 1, 1, 1, 2, 2), 1));
  CHECK(!kernels::winograd_geometry(window(3, 3, 1, 1, 1, 1, 1, 1), 2));
  CHECK(!kernels::winograd_geometry(window(5, 5, 1, 1, 2, 2, 2, 2), 1));
  auto count = [](int64_t h, int64_t w) {
    kernels::WinoCount c;
    c.add(h, w);
    return c;
  };
  CHECK(kernels::winograd_tile(512, 512, count(56, 56)) == 4);
  CHECK(kernels::winograd_tile(512, 512, count(3, 3)) == 0);   // 4 tiles padded to 16
  CHECK(kernels::winograd_tile(64, 3, count(224, 224)) == 0);  // k = 3: transforms dominate
  set_winograd_mode(2);
  CHECK(kernels::winograd_tile(512, 512, count(56, 56)) == 2);
  set_winograd_mode(4);
  CHECK(kernels::winograd_tile(512, 512, count(56, 56)) == 4);
  set_winograd_mode(0);
  CHECK(kernels::winograd_tile(512, 512, count(56, 56)) == 0);
  set_winograd_mode(1);
  bool threw = false;
  try {
    set_winograd_mode(3);
  } catch (const Error& e) {
    threw = e.kind() == ErrorKind::Value;
  }
  CHECK(threw);
  CHECK(winograd_mode() == 1);
}

// The transformed-filter cache of a forward conv (conv2d_share_wino_budget): a 13x13 map under
// F(4x4) qualifies (16 tiles: the filter transform is ~20% of the call). With room in the budget
// the first call fills it and takes its bytes from the budget; every call (1 and 2 threads, and
// 4 threads calling at once on a fresh cache) gives the uncached result bit for bit. Without room,
// nothing is kept and the budget is untouched. Another instruction set does not use it.
TEST(winograd_filter_cache) {
  std::mt19937 rng(29);
  const Window2d g = window(3, 3, 1, 1, 1, 1, 1, 1);
  const Tensor in = random_tensor(Shape::nchw(1, 32, 13, 13), rng);
  const Tensor w = random_tensor(Shape::nchw(40, 32, 3, 3), rng);
  const Tensor bias = random_tensor(Shape::vec(40), rng);
  const Shape os = Shape::nchw(1, 40, 13, 13);
  kernels::WinoCount count;
  count.add(13, 13);
  CHECK(kernels::winograd_tile(40, 32, count) == 4);
  const kernels::ConvPacked plain = kernels::conv2d_pack_forward(w, 1);
  Tensor want(os);
  kernels::conv2d_forward(Ctx{1, false}, in, w, bias.data(), g, 1, want, &plain);
  CHECK(kernels::conv2d_wino_cached_bytes(plain) == 0);

  auto budget = std::make_shared<std::atomic<int64_t>>(int64_t(1) << 30);
  kernels::ConvPacked cached = kernels::conv2d_pack_forward(w, 1);
  kernels::conv2d_share_wino_budget(cached, budget);
  for (int threads : {1, 1, 2, 2}) {
    Tensor got(os);
    kernels::conv2d_forward(Ctx{threads, false}, in, w, bias.data(), g, 1, got, &cached);
    CHECK(same_bits(got, want));
  }
  const int64_t bytes = kernels::conv2d_wino_cached_bytes(cached);
  CHECK(bytes >= int64_t(36 * 40 * 32 * sizeof(float)));  // U: 36 positions x m x k at least
  CHECK(budget->load() == (int64_t(1) << 30) - bytes);

  kernels::ConvPacked racing = kernels::conv2d_pack_forward(w, 1);
  kernels::conv2d_share_wino_budget(racing, budget);
  std::vector<Tensor> outs(4, Tensor(os));
  std::vector<std::thread> team;
  for (size_t t = 0; t < outs.size(); ++t)
    team.emplace_back([&, t] {
      kernels::conv2d_forward(Ctx{1, false}, in, w, bias.data(), g, 1, outs[t], &racing);
    });
  for (std::thread& t : team) t.join();
  for (const Tensor& o : outs) CHECK(same_bits(o, want));
  CHECK(kernels::conv2d_wino_cached_bytes(racing) == bytes);  // filled once
  CHECK(budget->load() == (int64_t(1) << 30) - 2 * bytes);

  auto small = std::make_shared<std::atomic<int64_t>>(bytes - 1);
  kernels::ConvPacked refused = kernels::conv2d_pack_forward(w, 1);
  kernels::conv2d_share_wino_budget(refused, small);
  Tensor got(os);
  kernels::conv2d_forward(Ctx{2, false}, in, w, bias.data(), g, 1, got, &refused);
  CHECK(same_bits(got, want));
  CHECK(kernels::conv2d_wino_cached_bytes(refused) == 0 && small->load() == bytes - 1);

  if (std::string(kernels::sgemm_isa()) != "portable") {  // a forced ISA transforms per call
    set_isa("portable");
    Tensor port(os), port_cached(os);
    kernels::conv2d_forward(Ctx{1, false}, in, w, bias.data(), g, 1, port, &plain);
    kernels::conv2d_forward(Ctx{1, false}, in, w, bias.data(), g, 1, port_cached, &cached);
    set_isa("auto");
    CHECK(same_bits(port, port_cached));
  }
}

// Where the transposed conv can overwrite (stride 1, 6+ channels per group), gin's reachable
// rectangles get W^T gout whatever they held (NaN here), by the flipped-kernel GEMM and by
// Winograd alike, and nothing outside them changes.
TEST(conv2d_backward_overwrite) {
  std::mt19937 rng(13);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int tested = 0, winograd = 0;
  for (const ConvCase& cs : kCases) {
    const int64_t cg = cs.c / cs.groups;
    if (!kernels::conv2d_backward_overwrites(cs.g, cg)) continue;
    ++tested;
    const Tensor w = random_tensor(Shape::nchw(cs.oc, cg, cs.g.kh, cs.g.kw), rng);
    const Shape gs = out_shape(cs);
    const Shape is = Shape::nchw(cs.n, cs.c, cs.h, cs.w);
    const Regions rs = make_regions(gs);
    const Tensor gout = region_gout(gs, rs, rng);
    Tensor want(is, 0.f), bound(is, 0.f);
    kernels::conv2d_backward_ref(gout, w, cs.g, cs.groups, want, 1);
    kernels::conv2d_backward_ref(abs_of(gout), abs_of(w), cs.g, cs.groups, bound, 1);
    const int64_t terms = cs.oc / cs.groups * cs.g.kh * cs.g.kw + 1;
    const kernels::ConvPacked back = kernels::conv2d_pack_backward(w, cs.g, cs.groups);
    const kernels::ConvPacked fwd = kernels::conv2d_pack_forward(w, cs.groups);
    for (int path = 0; path < 2; ++path) {
      Tensor got(is, nan);
      if (path == 0) {
        kernels::conv2d_backward(Ctx{2, false}, gout, rs, w, cs.g, cs.groups, got, &back, true);
      } else {
        // Forced F(2x2): the cost model leaves these small regions to the direct GEMM.
        const int mode = winograd_mode();
        set_winograd_mode(2);
        const bool used = kernels::conv2d_backward_winograd(Ctx{2, false}, gout, rs, cs.g,
                                                            cs.groups, got, fwd, true);
        set_winograd_mode(mode);
        if (!used) continue;  // no Winograd for this geometry
      }
      winograd += path;
      const std::string what = std::string(cs.name) + (path ? " winograd" : " gemm") + " overwrite";
      const double u = std::ldexp(1.0, -24) * (terms + 4) * (path ? 64 : 1);
      for (int64_t b = 0; b < is.n; ++b) {
        const Region& r = rs[b];
        // The reachable input rectangle: gin row y reads gout rows y - t.pt .. y + pt.
        const int64_t reach_y = cs.g.dh * (cs.g.kh - 1) - cs.g.pt,
                      reach_x = cs.g.dw * (cs.g.kw - 1) - cs.g.pl;
        const int64_t y0 = std::max<int64_t>(0, r.y0 - cs.g.pt),
                      y1 = std::min(cs.h, r.y1 + reach_y);
        const int64_t x0 = std::max<int64_t>(0, r.x0 - cs.g.pl),
                      x1 = std::min(cs.w, r.x1 + reach_x);
        for (int64_t c = 0; c < cs.c; ++c)
          for (int64_t y = 0; y < cs.h; ++y)
            for (int64_t x = 0; x < cs.w; ++x) {
              const int64_t i = y * cs.w + x;
              const float v = got.plane(b, c)[i];
              const bool inside = !r.empty() && y >= y0 && y < y1 && x >= x0 && x < x1;
              const bool ok = inside ? std::fabs(double(v) - want.plane(b, c)[i]) <=
                                           u * bound.plane(b, c)[i] + 1e-30
                                     : std::isnan(v);
              if (!ok)
                check::fail_at(__FILE__, __LINE__,
                               what + " at " + std::to_string(b) + "," + std::to_string(c) + "," +
                                   std::to_string(i));
            }
      }
    }
  }
  CHECK(tested >= 5 && winograd >= 1);
}

// Few-input-channel convs (first layers) run on the direct kernel (direct_conv.hpp); it promises
// the GEMM path's bits, fused ReLU and mask included, on every micro-kernel ISA the CPU has.
TEST(direct_conv_matches_gemm) {
  std::mt19937 rng(11);
  int tested = 0;
  for (const ConvCase& cs : kCases) {
    const Tensor w = random_tensor(Shape::nchw(cs.oc, cs.c / cs.groups, cs.g.kh, cs.g.kw), rng);
    if (!kernels::direct_conv_fits(w.shape(), cs.g, cs.groups)) continue;
    ++tested;
    const Tensor in = random_tensor(Shape::nchw(cs.n, cs.c, cs.h, cs.w), rng);
    const Tensor bias = random_tensor(Shape::vec(cs.oc), rng);
    const kernels::ConvPacked direct = kernels::conv2d_pack_forward(w, cs.groups);
    CHECK(!direct.direct.empty());
    kernels::ConvPacked gemm = kernels::conv2d_pack_forward(w, cs.groups);
    gemm.direct.clear();
    const Shape os = out_shape(cs);
    for (const char* isa : {"portable", "avx2", "avx512"}) {
      try {
        set_isa(isa);
      } catch (const Error&) {
        continue;  // not on this CPU
      }
      for (int threads : {1, 2})
        for (const float* b : {bias.data(), static_cast<const float*>(nullptr)}) {
          const std::string what = std::string(cs.name) + " " + isa + " threads " +
                                   std::to_string(threads) + (b ? "" : " no bias");
          const Ctx ctx{threads, false};
          // Plain, then with a separate ReLU output and mask, then with the ReLU in place.
          Tensor d_out(os, 7.0f), g_out(os, 7.0f);
          kernels::conv2d_forward(ctx, in, w, b, cs.g, cs.groups, d_out, &direct);
          kernels::conv2d_forward(ctx, in, w, b, cs.g, cs.groups, g_out, &gemm);
          if (!same_bits(d_out, g_out)) check::fail_at(__FILE__, __LINE__, what + ": output");
          Tensor d_relu(os, 7.0f), g_relu(os, 7.0f);
          TensorT<uint8_t> d_mask(os, uint8_t(7)), g_mask(os, uint8_t(7));
          kernels::conv2d_forward(ctx, in, w, b, cs.g, cs.groups, d_out, &direct, &d_relu, &d_mask);
          kernels::conv2d_forward(ctx, in, w, b, cs.g, cs.groups, g_out, &gemm, &g_relu, &g_mask);
          const bool masks_equal =
              std::memcmp(d_mask.data(), g_mask.data(), static_cast<size_t>(d_mask.numel())) == 0;
          if (!same_bits(d_out, g_out) || !same_bits(d_relu, g_relu) || !masks_equal)
            check::fail_at(__FILE__, __LINE__, what + ": fused ReLU");
          kernels::conv2d_forward(ctx, in, w, b, cs.g, cs.groups, d_out, &direct, &d_out, &d_mask);
          if (!same_bits(d_out, g_relu)) check::fail_at(__FILE__, __LINE__, what + ": in place");
        }
    }
    set_isa("auto");
  }
  CHECK(tested >= 10);
}

PYDECONV_TEST_MAIN()
