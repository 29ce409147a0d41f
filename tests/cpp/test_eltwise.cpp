// The kernels that used to live inline in the layer files (ReLU forward and its three backward
// rules, add, concat, softmax, the batch-norm channel affine, average and global average
// pooling) against their reference twins (kernels/ref/), on odd shapes, at 1 and 2 threads, with
// region-limited gradients (zero outside each sample's region, whose last one is empty) and
// reps > 1; both thread counts must give the same bits, and the kernels must select their twin
// under ctx.reference.
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel_compare.hpp"

using namespace pydeconv;
using namespace pydeconv::kernels;
using namespace kcmp;

namespace {

// Odd shapes (N = 1: the forward batch), the last large enough for the kernels' threaded paths.
std::vector<Shape> shapes() {
  return {Shape::nchw(1, 1, 1, 1), Shape::nchw(1, 3, 5, 7), Shape::nchw(1, 13, 11, 6),
          Shape::nchw(1, 17, 71, 67)};
}

}  // namespace

TEST(relu_forward_matches_reference) {
  std::mt19937 rng(1);
  for (const Shape& s : shapes()) {
    const Tensor x = random_tensor(s, rng);
    std::vector<uint8_t> mref(static_cast<size_t>(x.numel())), mfast(mref.size());
    Tensor y(s);
    relu_forward_ref(x.data(), y.data(), mref.data(), x.numel());
    for (const Ctx& ctx : {kFast1, kFast2}) {
      Tensor yf(s);
      relu_forward(ctx, x.data(), yf.data(), mfast.data(), x.numel());
      CHECK(same_bits(yf, y));
      CHECK(mfast == mref);
      Tensor inplace = x.clone();  // y may be x itself
      relu_forward(ctx, inplace.data(), inplace.data(), nullptr, x.numel());
      CHECK(same_bits(inplace, y));
    }
  }
}

TEST(relu_backward_matches_reference_all_rules) {
  std::mt19937 rng(2);
  const int64_t reps = 2, batch = 3 * reps;
  // deconvnet (rectify), guided (both), backprop (gate)
  const bool rules[3][2] = {{true, false}, {true, true}, {false, true}};
  for (const Shape& s : shapes()) {
    const Tensor x = random_tensor(s.with_n(3), rng);
    std::vector<uint8_t> mask(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) mask[i] = x.data()[i] > 0.f;
    Regions rs;
    const Tensor g = region_grad(s, batch, rng, rs, 0.f);
    const Tensor gin0 = random_tensor(g.shape(), rng);
    for (auto& rule : rules)
      for (const uint8_t* m :
           {static_cast<const uint8_t*>(nullptr), static_cast<const uint8_t*>(mask.data())}) {
        const std::string what = "relu backward " + s.str() +
                                 " rectify=" + std::to_string(rule[0]) +
                                 " gate=" + std::to_string(rule[1]) + (m ? " mask" : " input");
        compare_with_twin(
            gin0,
            [&](const Ctx& ctx, Tensor& gin) {
              relu_backward(ctx, g, rs, x.data(), m, rule[0], rule[1], gin, reps);
            },
            [&](Tensor& gin) { relu_backward_ref(g, x.data(), m, rule[0], rule[1], gin, reps); },
            0.0, what);
        // In place: gin is gout's own buffer.
        compare_with_twin(
            g,
            [&](const Ctx& ctx, Tensor& gin) {
              relu_backward(ctx, gin, rs, x.data(), m, rule[0], rule[1], gin, reps);
            },
            [&](Tensor& gin) { relu_backward_ref(gin, x.data(), m, rule[0], rule[1], gin, reps); },
            0.0, what + " in place");
      }
  }
}

TEST(add_matches_reference) {
  std::mt19937 rng(3);
  for (const Shape& s : shapes())
    for (int k : {2, 3, 5}) {
      std::vector<Tensor> xs;
      for (int i = 0; i < k; ++i) xs.push_back(random_tensor(s.with_n(2), rng));
      std::vector<const Tensor*> in;
      for (const Tensor& t : xs) in.push_back(&t);
      compare_with_twin(
          Tensor(s.with_n(2), 0.f), [&](const Ctx& ctx, Tensor& y) { add_forward(ctx, in, y); },
          [&](Tensor& y) { add_forward_ref(in, y); }, 0.0, "add forward " + s.str());
      Regions rs;
      const Tensor g = region_grad(s, 4, rng, rs, 0.f);
      // Inputs' gradients laid end to end in one tensor (so `compare` sees them all); the second
      // input listed twice, as add(x, y, y) hands the same gradient over twice.
      const int64_t per = g.numel();
      const Tensor init = random_tensor(Shape::nc(1, per * k), rng);
      auto views = [&](Tensor& all) {
        std::vector<Tensor> v;
        for (int i = 0; i < k; ++i)
          v.emplace_back(g.shape(), std::shared_ptr<float>(all.storage(), all.data() + i * per));
        return v;
      };
      auto run = [&](Tensor& all, bool ref, const Ctx& ctx) {
        std::vector<Tensor> v = views(all);
        std::vector<Tensor*> gin;
        for (int i = 0; i < k; ++i) gin.push_back(&v[static_cast<size_t>(i == 2 ? 1 : i)]);
        if (ref)
          add_backward_ref(g, gin);
        else
          add_backward(ctx, g, rs, gin);
      };
      compare_with_twin(
          init, [&](const Ctx& ctx, Tensor& all) { run(all, false, ctx); },
          [&](Tensor& all) { run(all, true, kRef); }, 0.0, "add backward " + s.str());
    }
}

TEST(concat_matches_reference) {
  std::mt19937 rng(4);
  for (const Shape& s : shapes()) {
    const int64_t cs[] = {s.c, 1, s.c + 2};
    std::vector<Tensor> xs;
    int64_t c_all = 0;
    for (int64_t c : cs) {
      xs.push_back(random_tensor(Shape::nchw(2, c, s.h, s.w), rng));
      c_all += c;
    }
    std::vector<const Tensor*> in;
    for (const Tensor& t : xs) in.push_back(&t);
    const Shape os = Shape::nchw(1, c_all, s.h, s.w);
    compare_with_twin(
        Tensor(os.with_n(2), 0.f), [&](const Ctx& ctx, Tensor& y) { concat_forward(ctx, in, y); },
        [&](Tensor& y) { concat_forward_ref(in, y); }, 0.0, "concat forward " + s.str());
    Regions rs;
    const Tensor g = region_grad(os, 4, rng, rs, 0.f);
    for (bool twice : {false, true}) {
      const Tensor init = random_tensor(Shape::nc(1, g.numel()), rng);
      auto run = [&](Tensor& all, bool ref, const Ctx& ctx) {
        std::vector<Tensor> v;
        int64_t off = 0;
        for (int64_t c : cs) {
          const Shape gs = Shape::nchw(4, c, s.h, s.w);
          v.emplace_back(gs, std::shared_ptr<float>(all.storage(), all.data() + off));
          off += gs.numel();
        }
        std::vector<Tensor*> gin{&v[0], &v[1], &v[2]};
        if (ref)
          concat_backward_ref(g, gin);
        else
          concat_backward(ctx, g, rs, gin);
      };
      if (twice) {  // concat(x, y, x): x's gradient tensor listed twice
        Regions rs2;
        const Tensor g2 = region_grad(Shape::nchw(1, cs[0] * 2 + 1, s.h, s.w), 4, rng, rs2, 0.f);
        const Tensor init2 = random_tensor(Shape::nc(1, 4 * (cs[0] + 1) * s.plane()), rng);
        auto run2 = [&](Tensor& all, bool ref, const Ctx& ctx) {
          Tensor a(Shape::nchw(4, cs[0], s.h, s.w), all.storage());
          Tensor b(Shape::nchw(4, 1, s.h, s.w),
                   std::shared_ptr<float>(all.storage(), all.data() + a.numel()));
          std::vector<Tensor*> gin{&a, &b, &a};
          if (ref)
            concat_backward_ref(g2, gin);
          else
            concat_backward(ctx, g2, rs2, gin);
        };
        compare_with_twin(
            init2, [&](const Ctx& ctx, Tensor& all) { run2(all, false, ctx); },
            [&](Tensor& all) { run2(all, true, kRef); }, 0.0,
            "concat backward, an input twice " + s.str());
        continue;
      }
      compare_with_twin(
          init, [&](const Ctx& ctx, Tensor& all) { run(all, false, ctx); },
          [&](Tensor& all) { run(all, true, kRef); }, 0.0, "concat backward " + s.str());
    }
  }
}

TEST(softmax_matches_reference) {
  std::mt19937 rng(5);
  const int64_t reps = 2;
  for (const Shape& s : shapes()) {
    const Tensor x = random_tensor(s.with_n(2), rng, 8.0f);
    Tensor y(x.shape());
    softmax_forward_ref(x, y);
    compare_with_twin(
        Tensor(x.shape(), 0.f), [&](const Ctx& ctx, Tensor& out) { softmax_forward(ctx, x, out); },
        [&](Tensor& out) { softmax_forward_ref(x, out); }, 1e-6, "softmax forward " + s.str());
    const Tensor g = random_tensor(s.with_n(2 * reps), rng);
    compare_with_twin(
        random_tensor(g.shape(), rng),
        [&](const Ctx& ctx, Tensor& gin) { softmax_backward(ctx, y, g, gin, reps); },
        [&](Tensor& gin) { softmax_backward_ref(y, g, gin, reps); }, 1e-6,
        "softmax backward " + s.str());
  }
  // Rank 2 (a classifier's output).
  const Tensor x = random_tensor(Shape::nc(3, 1000), rng, 8.0f);
  compare_with_twin(
      Tensor(x.shape(), 0.f), [&](const Ctx& ctx, Tensor& out) { softmax_forward(ctx, x, out); },
      [&](Tensor& out) { softmax_forward_ref(x, out); }, 1e-6, "softmax forward rank 2");
}

TEST(channel_affine_matches_reference) {
  std::mt19937 rng(6);
  for (const Shape& s : shapes()) {
    const Tensor x = random_tensor(s.with_n(2), rng, 4.0f);
    std::vector<float> a(static_cast<size_t>(s.c)), b(a.size());
    for (auto& v : a) v = float(rng() % 1000) / 250.f - 2.f;
    for (auto& v : b) v = float(rng() % 1000) / 500.f - 1.f;
    compare_with_twin(
        Tensor(x.shape(), 0.f),
        [&](const Ctx& ctx, Tensor& y) { channel_affine_forward(ctx, x, a.data(), b.data(), y); },
        [&](Tensor& y) { channel_affine_forward_ref(x, a.data(), b.data(), y); }, 1e-6,
        "channel affine forward " + s.str());
    Regions rs;
    const Tensor g = region_grad(s, 4, rng, rs, 0.f);
    compare_with_twin(
        random_tensor(g.shape(), rng),
        [&](const Ctx& ctx, Tensor& gin) { channel_affine_backward(ctx, g, rs, a.data(), gin); },
        [&](Tensor& gin) { channel_affine_backward_ref(g, a.data(), gin); }, 0.0,
        "channel affine backward " + s.str());
  }
}

TEST(global_avg_pool_matches_reference) {
  std::mt19937 rng(7);
  for (const Shape& s : shapes()) {
    const Tensor x = random_tensor(s.with_n(3), rng);
    compare_with_twin(
        Tensor(Shape::nchw(3, s.c, 1, 1), 0.f),
        [&](const Ctx& ctx, Tensor& y) { global_avg_pool_forward(ctx, x, y); },
        [&](Tensor& y) { global_avg_pool_forward_ref(x, y); }, 0.0,
        "global avg pool forward " + s.str());
    const Tensor g = random_tensor(Shape::nchw(4, s.c, 1, 1), rng);
    compare_with_twin(
        random_tensor(s.with_n(4), rng),
        [&](const Ctx& ctx, Tensor& gin) { global_avg_pool_backward(ctx, g, gin); },
        [&](Tensor& gin) { global_avg_pool_backward_ref(g, gin); }, 1e-6,
        "global avg pool backward " + s.str());
  }
}

// Average pooling's fast kernels (kernels/pool.cpp) do not select their twin themselves (the
// layer does), so only fast against reference here.
TEST(avg_pool_matches_reference) {
  std::mt19937 rng(8);
  struct Case {
    int64_t kh, kw, sh, sw, pt, pl, pb, pr;
    bool ceil;
  };
  const Case cases[] = {{2, 2, 2, 2, 0, 0, 0, 0, false}, {3, 3, 2, 2, 1, 1, 1, 1, true},
                        {3, 2, 1, 3, 0, 1, 2, 0, false}, {5, 5, 3, 3, 2, 2, 2, 2, true},
                        {1, 1, 2, 2, 0, 0, 0, 0, false}, {2, 3, 3, 2, 1, 0, 0, 2, true}};
  int ran = 0;
  for (const Shape& s : shapes())
    for (const Case& c : cases)
      for (bool include_pad : {false, true}) {
        Window2d g;
        g.kh = c.kh, g.kw = c.kw, g.sh = c.sh, g.sw = c.sw;
        g.pt = c.pt, g.pl = c.pl, g.pb = c.pb, g.pr = c.pr;
        g.ceil_mode = c.ceil;
        if (g.out_h(s.h) <= 0 || g.out_w(s.w) <= 0) continue;
        const Shape os = Shape::nchw(2, s.c, g.out_h(s.h), g.out_w(s.w));
        const Tensor x = random_tensor(s.with_n(2), rng);
        const std::string what = s.str() + " case " + std::to_string(&c - cases) +
                                 " include_pad=" + std::to_string(include_pad);
        Tensor ref(os), f1(os), f2(os);
        avg_pool2d_forward_ref(x, g, include_pad, ref);
        avg_pool2d_forward(kFast1, x, g, include_pad, f1);
        avg_pool2d_forward(kFast2, x, g, include_pad, f2);
        expect_close(f1, ref, 1e-6, "avg pool forward " + what);
        CHECK(same_bits(f1, f2));
        const Tensor gout = random_tensor(os, rng);
        const Tensor gin0 = random_tensor(s.with_n(2), rng);
        Tensor br = gin0.clone(), b1 = gin0.clone(), b2 = gin0.clone();
        avg_pool2d_backward_ref(gout, g, include_pad, br);
        avg_pool2d_backward(kFast1, gout, g, include_pad, b1);
        avg_pool2d_backward(kFast2, gout, g, include_pad, b2);
        expect_close(b1, br, 1e-5, "avg pool backward " + what);
        CHECK(same_bits(b1, b2));
        ++ran;
      }
  CHECK(ran > 30);
}

PYDECONV_TEST_MAIN()
