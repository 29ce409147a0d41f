// The element-wise activations (leaky_relu, prelu, clip, sigmoid, tanh, silu, hardsigmoid,
// hardswish, mish, elu, gelu) in float: one forward and one backward loop nest, templated on a
// functor per kind (f and f'), the kind chosen once per call. The backward works only inside each
// sample's region, in place when gin is gout's buffer. Threads split fixed chunks of planes, each
// element computed alone: the same bits for any thread count. Sigmoid and SiLU forwards run the
// kernel table's vectorised rows (act_rows.inc: a polynomial e^x, 16 lanes on AVX-512); glibc's
// scalar expf made YOLOv8n's SiLU layers a third of its forward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/dispatch.hpp"
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

#define PYDECONV_ACT_ROWS act_exp_rows_portable
#include "act_rows.inc"
#undef PYDECONV_ACT_ROWS

namespace {

// Elements below which one thread does it all: ReLU's threshold (relu.cpp), not measured again
// for these kinds (their transcendental ones would pay off threads somewhat earlier).
constexpr int64_t kParallel = 1 << 16;
constexpr int64_t kChunk = 4096;  // forward: elements of a plane per task

inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

// tanh from one expm1f: e / (e + 2), e = expm1(2|x|), |x| capped at 10 (tanh is 1 in float from
// 9.1 on), the sign copied back. glibc's tanhf is several times slower here.
inline float tanh1(float x) {
  const float e = std::expm1(2.f * std::min(std::fabs(x), 10.f));
  return std::copysign(e / (e + 2.f), x);
}

// tanh(softplus(x)) from one expf: with n = e^x, tanh(log(1 + n)) = n(n + 2) / (n(n + 2) + 2);
// x capped at 20 (the value is 1 in float from 9 on). Also returns sigmoid(x) = n / (1 + n).
inline float tanh_softplus(float x, float* sig = nullptr) {
  const float n = std::exp(std::min(x, 20.f));
  const float p = n * (n + 2.f);
  if (sig != nullptr) *sig = x > 20.f ? 1.f : n / (1.f + n);
  return p / (p + 2.f);
}

// Each functor: f(x), d(x) = f'(x), and at(c): the functor for channel c (prelu's slope). The
// cheap ones avoid a float operation used in one arm of a select: GCC (trapping math, the
// default) then keeps a branch and does not vectorise (`x > 0 ? x : a * x` ran 10x slower than
// the form below on a Zen 3, baseline x86-64 build). A select between values computed in both
// arms, min/max and multiplying by 0 or 1 vectorise. Values equal the reference's (a zero's sign
// may differ).
struct LeakyOp {
  static constexpr bool kCheap = true;  // f' is a select: no calls
  float a;
  const float* slope;
  LeakyOp at(int64_t c) const { return {slope != nullptr ? slope[c] : a, nullptr}; }
  float f(float x) const { return std::max(x, 0.f) + a * std::min(x, 0.f); }
  float d(float x) const { return x > 0.f ? 1.f : a; }
};
struct ClipOp {
  static constexpr bool kCheap = true;  // f' is a select: no calls
  float lo, hi;
  ClipOp at(int64_t) const { return *this; }
  float f(float x) const { return std::min(std::max(x, lo), hi); }
  float d(float x) const { return (x > lo) & (x < hi) ? 1.f : 0.f; }
};
struct SigmoidOp {
  SigmoidOp at(int64_t) const { return *this; }
  float f(float x) const { return sigmoid(x); }
  float d(float x) const {
    const float s = sigmoid(x);
    return s * (1.f - s);
  }
};
struct TanhOp {
  TanhOp at(int64_t) const { return *this; }
  float f(float x) const { return tanh1(x); }
  float d(float x) const {
    const float t = tanh1(x);
    return 1.f - t * t;
  }
};
struct SiluOp {
  SiluOp at(int64_t) const { return *this; }
  float f(float x) const { return x * sigmoid(x); }
  float d(float x) const {
    const float s = sigmoid(x);
    return s * (1.f + x * (1.f - s));
  }
};
struct HardSigmoidOp {
  static constexpr bool kCheap = true;  // f' is a select: no calls
  float a, b;
  HardSigmoidOp at(int64_t) const { return *this; }
  float f(float x) const { return std::min(1.f, std::max(0.f, a * x + b)); }
  float d(float x) const {
    const float v = a * x + b;
    return (v > 0.f) & (v < 1.f) ? a : 0.f;
  }
};
struct HardSwishOp {
  static constexpr bool kCheap = true;  // f' is a select: no calls
  HardSwishOp at(int64_t) const { return *this; }
  float f(float x) const { return x * std::min(1.f, std::max(0.f, x / 6.f + 0.5f)); }
  float d(float x) const {  // 0 (x <= -3), x/3 + 1/2 strictly inside, 1 (x >= 3)
    const float inside = (x > -3.f) & (x < 3.f) ? 1.f : 0.f;
    return (x / 3.f + 0.5f) * inside + (x >= 3.f ? 1.f : 0.f);
  }
};
struct MishOp {
  MishOp at(int64_t) const { return *this; }
  float f(float x) const { return x * tanh_softplus(x); }
  float d(float x) const {
    float s;
    const float t = tanh_softplus(x, &s);
    return t + x * s * (1.f - t * t);
  }
};
struct EluOp {
  float a;
  EluOp at(int64_t) const { return *this; }
  float f(float x) const { return x > 0.f ? x : a * std::expm1(x); }
  float d(float x) const { return x > 0.f ? 1.f : a * std::exp(x); }
};
struct GeluOp {
  GeluOp at(int64_t) const { return *this; }
  float f(float x) const { return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f)); }
  float d(float x) const {
    return 0.5f * (1.f + std::erf(x * 0.70710678118654752f)) +
           x * std::exp(-0.5f * x * x) * 0.39894228040143268f;
  }
};
struct GeluTanhOp {
  GeluTanhOp at(int64_t) const { return *this; }
  static constexpr float kK = 0.79788456080286536f;  // sqrt(2/pi)
  float f(float x) const { return 0.5f * x * (1.f + tanh1(kK * (x + 0.044715f * x * x * x))); }
  float d(float x) const {
    const float t = tanh1(kK * (x + 0.044715f * x * x * x));
    return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * kK * (1.f + 3.f * 0.044715f * x * x);
  }
};

// Calls fn(op) with the functor of p.op.
template <typename Fn>
void with_op(const ActParams& p, Fn&& fn) {
  switch (p.op) {
    case Act::LeakyRelu: return fn(LeakyOp{p.alpha, p.slope});
    case Act::Clip: return fn(ClipOp{p.lo, p.hi});
    case Act::Sigmoid: return fn(SigmoidOp{});
    case Act::Tanh: return fn(TanhOp{});
    case Act::Silu: return fn(SiluOp{});
    case Act::HardSigmoid: return fn(HardSigmoidOp{p.alpha, p.beta});
    case Act::HardSwish: return fn(HardSwishOp{});
    case Act::Mish: return fn(MishOp{});
    case Act::Elu: return fn(EluOp{p.alpha});
    case Act::Gelu: return fn(GeluOp{});
    case Act::GeluTanh: return fn(GeluTanhOp{});
  }
}

// rows(x, m, y): the kind's forward over m floats (the vectorised exp-based kinds); else op.f.
template <typename Op, typename Rows>
void forward_planes(const Ctx& ctx, const Tensor& in, Op op, Tensor& out, Rows rows) {
  const Shape& s = in.shape();
  const int64_t hw = s.plane(), per_plane = (hw + kChunk - 1) / kChunk;
  const int64_t tasks = s.n * s.c * per_plane;
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && in.numel() > kParallel)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t p = t / per_plane, i0 = (t % per_plane) * kChunk;
    const int64_t m = std::min(hw, i0 + kChunk) - i0;
    const Op o = op.at(p % s.c);
    const float* x = in.data() + p * hw + i0;
    float* y = out.data() + p * hw + i0;
    if constexpr (std::is_same_v<Rows, std::nullptr_t>) {
      for (int64_t i = 0; i < m; ++i) y[i] = o.f(x[i]);
    } else {
      rows(x, m, y);
    }
  }
}

// Whether Op declares kCheap (its f' is a select, no calls).
template <typename Op>
constexpr bool cheap(decltype(Op::kCheap)) {
  return Op::kCheap;
}
template <typename Op>
constexpr bool cheap(...) {
  return false;
}

// d[i] += v(g[i], i) (acc) or, in place (d is g's own memory), d[i] = v(d[i], i): the loop then
// uses d alone, or the vectoriser's overlap check would send it down its scalar path.
template <bool acc, typename V>
inline void row(const float* g, float* d, int64_t m, V v) {
  if (acc) {
    for (int64_t i = 0; i < m; ++i) d[i] += v(g[i], i);
  } else {
    for (int64_t i = 0; i < m; ++i) d[i] = v(d[i], i);
  }
}

// One pass over the regions' rows. Accumulate false: in place (gin is gout's own buffer), the
// result replaces the signal; true: it is added to what other consumers already sent down.
template <typename Op, typename Accumulate>
void backward_rows(const Ctx& ctx, const Tensor& gout, const Regions& region, const float* x, Op op,
                   ActDown down, Tensor& gin, int64_t reps, int64_t work, Accumulate) {
  constexpr bool acc = Accumulate::value;
  const Shape& s = gout.shape();
  const int64_t planes = s.n * s.c, hw = s.plane(), per_sample = s.sample();
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && work > kParallel)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t b = p / s.c, c = p % s.c;
    const Region& r = region[b];
    const Op o = op.at(c);
    const int64_t fwd = (b / reps) * per_sample + c * hw;  // offset in the forward input
    for (int64_t y = r.y0; y < r.y1; ++y) {
      const int64_t i0 = y * s.w + r.x0, m = r.x1 - r.x0;
      const float* g = gout.data() + p * hw + i0;
      float* d = gin.data() + p * hw + i0;
      const float* xx = x + fwd + i0;
      // The way down is chosen outside the loops. Guided: relu(g) * f'(x), which vectorises, for
      // the kinds whose f' is a select; the others call f' only where g > 0.
      if (down == ActDown::Rectify)
        row<acc>(g, d, m, [](float gi, int64_t) { return gi > 0.f ? gi : 0.f; });
      else if (down == ActDown::Guided && cheap<Op>(0))
        row<acc>(g, d, m, [&](float gi, int64_t i) { return std::max(gi, 0.f) * o.d(xx[i]); });
      else if (down == ActDown::Guided)
        row<acc>(g, d, m, [&](float gi, int64_t i) { return gi > 0.f ? gi * o.d(xx[i]) : 0.f; });
      else
        row<acc>(g, d, m, [&](float gi, int64_t i) { return gi * o.d(xx[i]); });
    }
  }
}

}  // namespace

void activation_forward(const Ctx& ctx, const Tensor& in, const ActParams& p, Tensor& out) {
  if (ctx.reference) return activation_forward_ref(in, p, out);
  // Sigmoid and SiLU by the ISA's vectorised rows (not in place: their pointers are restrict; an
  // in-place call keeps the functor's loop).
  if (p.op == Act::Sigmoid || p.op == Act::Silu) {
    const auto f = kernel_table().act_exp_rows;
    const int kind = p.op == Act::Silu ? 1 : 0;
    if (in.data() != out.data())
      return forward_planes(ctx, in, SiluOp{}, out,
                            [f, kind](const float* x, int64_t m, float* y) { f(kind, x, m, y); });
  }
  with_op(p, [&](auto op) { forward_planes(ctx, in, op, out, nullptr); });
}

void activation_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const Tensor& x,
                         const ActParams& p, ActDown down, Tensor& gin, int64_t reps) {
  if (ctx.reference) return activation_backward_ref(gout, x, p, down, gin, reps);
  const Shape& s = gout.shape();
  int64_t work = 0;
  for (int64_t b = 0; b < s.n; ++b) {
    const Region& rb = r[b];
    if (!rb.empty()) work += (rb.y1 - rb.y0) * (rb.x1 - rb.x0) * s.c;
  }
  with_op(p, [&](auto op) {
    if (gin.data() == gout.data())
      backward_rows(ctx, gout, r, x.data(), op, down, gin, reps, work, std::false_type{});
    else
      backward_rows(ctx, gout, r, x.data(), op, down, gin, reps, work, std::true_type{});
  });
}

}  // namespace pydeconv::kernels
