// Reference activations: element by element over the whole tensor, in double, straight from the
// definitions (docs/FORMAT.md) and their derivatives. Attributes are the float32 values the fast
// kernels use, so both decide the kinks (x vs clip's min, say) on the same numbers.
#include <cmath>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

constexpr double kPi = 3.14159265358979323846;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// f(x) for channel c.
double act_f(const ActParams& p, int64_t c, double x) {
  const double a = p.slope != nullptr ? p.slope[c] : p.alpha;
  switch (p.op) {
    case Act::LeakyRelu: return x > 0 ? x : a * x;
    case Act::Clip: return std::min(std::max(x, double(p.lo)), double(p.hi));
    case Act::Sigmoid: return sigmoid(x);
    case Act::Tanh: return std::tanh(x);
    case Act::Silu: return x * sigmoid(x);
    case Act::HardSigmoid: return std::min(1.0, std::max(0.0, a * x + p.beta));
    case Act::HardSwish: return x * std::min(1.0, std::max(0.0, x / 6 + 0.5));
    case Act::Mish: return x * std::tanh(std::log1p(std::exp(x)));
    case Act::Elu: return x > 0 ? x : a * std::expm1(x);
    case Act::Gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Act::GeluTanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / kPi) * (x + 0.044715 * x * x * x)));
  }
  return 0;
}

// f'(x) for channel c; at a kink, the x <= 0 side's (ReLU-like kinds) or 0 (clip, hardsigmoid:
// 1 or alpha only strictly inside; hardswish's x/3+1/2 too, as torch 2.13's hardswish_backward).
double act_d(const ActParams& p, int64_t c, double x) {
  const double a = p.slope != nullptr ? p.slope[c] : p.alpha;
  switch (p.op) {
    case Act::LeakyRelu: return x > 0 ? 1 : a;
    case Act::Clip: return x > p.lo && x < p.hi ? 1 : 0;
    case Act::Sigmoid: {
      const double s = sigmoid(x);
      return s * (1 - s);
    }
    case Act::Tanh: {
      const double t = std::tanh(x);
      return 1 - t * t;
    }
    case Act::Silu: {
      const double s = sigmoid(x);
      return s * (1 + x * (1 - s));
    }
    case Act::HardSigmoid: {
      const double v = a * x + p.beta;
      return v > 0 && v < 1 ? a : 0;
    }
    case Act::HardSwish: return x <= -3 ? 0 : x < 3 ? x / 3 + 0.5 : 1;
    case Act::Mish: {
      const double t = std::tanh(std::log1p(std::exp(x)));
      return t + x * sigmoid(x) * (1 - t * t);
    }
    case Act::Elu: return x > 0 ? 1 : a * std::exp(x);
    case Act::Gelu:
      return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) +
             x * std::exp(-0.5 * x * x) / std::sqrt(2 * kPi);
    case Act::GeluTanh: {
      const double k = std::sqrt(2 / kPi);
      const double t = std::tanh(k * (x + 0.044715 * x * x * x));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
    }
  }
  return 0;
}

}  // namespace

void activation_forward_ref(const Tensor& in, const ActParams& p, Tensor& out) {
  const Shape& s = in.shape();
  for (int64_t i = 0; i < s.numel(); ++i) {
    const int64_t c = (i / s.plane()) % s.c;
    out.data()[i] = static_cast<float>(act_f(p, c, in.data()[i]));
  }
}

void activation_backward_ref(const Tensor& gout, const Tensor& x, const ActParams& p, ActDown down,
                             Tensor& gin, int64_t reps) {
  const Shape& s = gout.shape();
  const bool in_place = gin.data() == gout.data();
  for (int64_t b = 0; b < s.n; ++b)
    for (int64_t i = 0; i < s.sample(); ++i) {
      const int64_t j = b * s.sample() + i, f = (b / reps) * s.sample() + i;
      const double g = gout.data()[j];
      const double xf = x.data()[f];
      const int64_t c = i / s.plane();
      double v = 0;
      switch (down) {
        case ActDown::Gradient: v = g * act_d(p, c, xf); break;
        case ActDown::Rectify: v = g > 0 ? g : 0; break;
        case ActDown::Guided: v = g > 0 ? g * act_d(p, c, xf) : 0; break;
      }
      if (in_place)
        gin.data()[j] = static_cast<float>(v);
      else
        gin.data()[j] = static_cast<float>(gin.data()[j] + v);
    }
}

}  // namespace pydeconv::kernels
