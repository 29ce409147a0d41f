// Reference ReLU: element by element over the whole tensor, straight from the three rules.
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void relu_forward_ref(const float* x, float* y, uint8_t* mask, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const bool on = x[i] > 0.f;
    if (mask != nullptr) mask[i] = on;
    y[i] = on ? x[i] : 0.f;
  }
}

void relu_backward_ref(const Tensor& gout, const float* x, const uint8_t* mask, bool rectify,
                       bool gate, Tensor& gin, int64_t reps) {
  const Shape& s = gout.shape();
  const bool in_place = gin.data() == gout.data();
  for (int64_t b = 0; b < s.n; ++b)
    for (int64_t i = 0; i < s.sample(); ++i) {
      const int64_t j = b * s.sample() + i, f = (b / reps) * s.sample() + i;
      const float g = gout.data()[j];
      float v = g;
      if (rectify && !(g > 0.f)) v = 0.f;
      if (gate && !(mask != nullptr ? mask[f] != 0 : x[f] > 0.f)) v = 0.f;
      if (in_place)
        gin.data()[j] = v;
      else
        gin.data()[j] += v;
    }
}

}  // namespace pydeconv::kernels
