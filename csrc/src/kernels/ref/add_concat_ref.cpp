// Reference add and concat: element by element over whole tensors, no regions.
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void add_forward_ref(const std::vector<const Tensor*>& in, Tensor& out) {
  for (int64_t i = 0; i < out.numel(); ++i) {
    float v = 0.f;
    for (const Tensor* t : in) v += t->data()[i];
    out.data()[i] = v;
  }
}

void add_backward_ref(const Tensor& gout, const std::vector<Tensor*>& gin) {
  for (Tensor* g : gin)
    for (int64_t i = 0; i < gout.numel(); ++i) g->data()[i] += gout.data()[i];
}

void concat_forward_ref(const std::vector<const Tensor*>& in, Tensor& out) {
  const Shape& os = out.shape();
  for (int64_t n = 0; n < os.n; ++n) {
    int64_t c0 = 0;
    for (const Tensor* t : in) {
      for (int64_t c = 0; c < t->shape().c; ++c)
        for (int64_t i = 0; i < t->shape().plane(); ++i)
          out.plane(n, c0 + c)[i] = t->plane(n, c)[i];
      c0 += t->shape().c;
    }
  }
}

void concat_backward_ref(const Tensor& gout, const std::vector<Tensor*>& gin) {
  const Shape& gs = gout.shape();
  for (int64_t n = 0; n < gs.n; ++n) {
    int64_t c0 = 0;
    for (Tensor* g : gin) {
      for (int64_t c = 0; c < g->shape().c; ++c)
        for (int64_t i = 0; i < g->shape().plane(); ++i)
          g->plane(n, c)[i] += gout.plane(n, c0 + c)[i];
      c0 += g->shape().c;
    }
  }
}

}  // namespace pydeconv::kernels
