// Reference kernels of the layout kinds a detection head's decode needs (reshape, transpose, concat
// along H or W, a weighted sum of inputs, an affine map by broadcast constant tensors): element by
// element over whole tensors, no regions. They are the only kernels of these kinds: each is one
// pass of copies or one multiply-add per element, which no benchmark has asked to speed up.
#include <array>
#include <vector>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

std::array<int64_t, 3> dims3(const Shape& s) { return {s.c, s.h, s.w}; }

// Per-sample offset of the input element that out's (i0, i1, i2) copies: out axis k is in axis
// perm[k].
int64_t transposed_offset(const std::array<int64_t, 3>& in, const int64_t* perm, int64_t i0,
                          int64_t i1, int64_t i2) {
  std::array<int64_t, 3> at{};
  at[static_cast<size_t>(perm[0])] = i0;
  at[static_cast<size_t>(perm[1])] = i1;
  at[static_cast<size_t>(perm[2])] = i2;
  return (at[0] * in[1] + at[1]) * in[2] + at[2];
}

}  // namespace

void reshape_forward_ref(const Tensor& in, Tensor& out) {
  for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] = in.data()[i];
}

void reshape_backward_ref(const Tensor& gout, Tensor& gin) {
  for (int64_t i = 0; i < gout.numel(); ++i) gin.data()[i] += gout.data()[i];
}

void transpose_forward_ref(const Tensor& in, const int64_t* perm, Tensor& out) {
  const auto id = dims3(in.shape()), od = dims3(out.shape());
  const int64_t sample = in.shape().sample();
  for (int64_t n = 0; n < out.shape().n; ++n) {
    const float* src = in.data() + n * sample;
    float* dst = out.data() + n * sample;
    for (int64_t a = 0; a < od[0]; ++a)
      for (int64_t b = 0; b < od[1]; ++b)
        for (int64_t c = 0; c < od[2]; ++c)
          dst[(a * od[1] + b) * od[2] + c] = src[transposed_offset(id, perm, a, b, c)];
  }
}

void transpose_backward_ref(const Tensor& gout, const int64_t* perm, Tensor& gin) {
  const auto id = dims3(gin.shape()), od = dims3(gout.shape());
  const int64_t sample = gin.shape().sample();
  for (int64_t n = 0; n < gout.shape().n; ++n) {
    const float* src = gout.data() + n * sample;
    float* dst = gin.data() + n * sample;
    for (int64_t a = 0; a < od[0]; ++a)
      for (int64_t b = 0; b < od[1]; ++b)
        for (int64_t c = 0; c < od[2]; ++c)
          dst[transposed_offset(id, perm, a, b, c)] += src[(a * od[1] + b) * od[2] + c];
  }
}

void concat_axis_forward_ref(const std::vector<const Tensor*>& in, int axis, Tensor& out) {
  const Shape& os = out.shape();
  for (int64_t n = 0; n < os.n; ++n) {
    int64_t off = 0;
    for (const Tensor* t : in) {
      const Shape& s = t->shape();
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t y = 0; y < s.h; ++y)
          for (int64_t x = 0; x < s.w; ++x) {
            const int64_t oy = axis == 2 ? y + off : y, ox = axis == 3 ? x + off : x;
            out.data()[((n * os.c + c) * os.h + oy) * os.w + ox] =
                t->data()[((n * s.c + c) * s.h + y) * s.w + x];
          }
      off += axis == 2 ? s.h : s.w;
    }
  }
}

void concat_axis_backward_ref(const Tensor& gout, int axis, const std::vector<Tensor*>& gin) {
  const Shape& os = gout.shape();
  for (int64_t n = 0; n < os.n; ++n) {
    int64_t off = 0;
    for (Tensor* t : gin) {
      const Shape& s = t->shape();
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t y = 0; y < s.h; ++y)
          for (int64_t x = 0; x < s.w; ++x) {
            const int64_t oy = axis == 2 ? y + off : y, ox = axis == 3 ? x + off : x;
            t->data()[((n * s.c + c) * s.h + y) * s.w + x] +=
                gout.data()[((n * os.c + c) * os.h + oy) * os.w + ox];
          }
      off += axis == 2 ? s.h : s.w;
    }
  }
}

void add_weighted_forward_ref(const std::vector<const Tensor*>& in, const std::vector<float>& w,
                              Tensor& out) {
  for (int64_t i = 0; i < out.numel(); ++i) {
    double v = 0.0;
    for (size_t k = 0; k < in.size(); ++k) v += double(w[k]) * double(in[k]->data()[i]);
    out.data()[i] = static_cast<float>(v);
  }
}

void add_weighted_backward_ref(const Tensor& gout, const std::vector<float>& w,
                               const std::vector<Tensor*>& gin) {
  for (size_t k = 0; k < gin.size(); ++k)
    for (int64_t i = 0; i < gout.numel(); ++i)
      gin[k]->data()[i] =
          static_cast<float>(double(gin[k]->data()[i]) + double(w[k]) * double(gout.data()[i]));
}

void broadcast_affine_forward_ref(const Tensor& in, const float* a, const float* b, Tensor& out) {
  const int64_t sample = in.shape().sample();
  for (int64_t n = 0; n < in.shape().n; ++n)
    for (int64_t i = 0; i < sample; ++i)
      out.data()[n * sample + i] =
          static_cast<float>(double(in.data()[n * sample + i]) * double(a[i]) + double(b[i]));
}

void broadcast_affine_backward_ref(const Tensor& gout, const float* a, Tensor& gin) {
  const int64_t sample = gout.shape().sample();
  for (int64_t n = 0; n < gout.shape().n; ++n)
    for (int64_t i = 0; i < sample; ++i)
      gin.data()[n * sample + i] = static_cast<float>(
          double(gin.data()[n * sample + i]) + double(gout.data()[n * sample + i]) * double(a[i]));
}

}  // namespace pydeconv::kernels
