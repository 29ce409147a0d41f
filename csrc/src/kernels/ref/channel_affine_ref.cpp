// Reference per-channel affine: element by element over whole tensors, no regions.
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void channel_affine_forward_ref(const Tensor& in, const float* a, const float* b, Tensor& out) {
  const Shape& s = in.shape();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t i = 0; i < s.plane(); ++i)
        out.plane(n, c)[i] = static_cast<float>(double(in.plane(n, c)[i]) * a[c] + b[c]);
}

void channel_affine_backward_ref(const Tensor& gout, const float* a, Tensor& gin) {
  const Shape& s = gout.shape();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t i = 0; i < s.plane(); ++i) gin.plane(n, c)[i] += gout.plane(n, c)[i] * a[c];
}

}  // namespace pydeconv::kernels
