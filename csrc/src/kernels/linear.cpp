// linear: GEMM, or matrix-vector products for small batches.
#include <algorithm>
#include <cmath>
#include <vector>

#include "dispatch.hpp"
#include "kernels/gemm.hpp"
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

namespace {

// Batches up to this size run linear as matrix-vector products that stream the weight matrix
// once (fc6 of ZFNet/VGG: 150 MB of weights for one image). A GEMM would pack all of it first,
// for a product that is memory bound anyway; larger batches reuse the weights enough to pay.
constexpr int64_t kGemvBatch = 2;
constexpr int64_t kParallelWork = 1 << 16;  // multiply-adds below which one thread does it all

// sum_p x[p] w[p] for a group of R weight rows (row stride k). Lane l of a row sums the elements
// p = l mod 8, and the lanes combine in a fixed order, so a row's result does not depend on its
// group or on the thread count. Several rows share each load of x and keep several memory streams
// in flight; the lane loops vectorise.
template <int R>
void dots(const float* x, const float* w, int64_t k, float* out, int64_t out_stride) {
  constexpr int L = 8;
  float acc[R][L] = {};
  int64_t p = 0;
  for (; p + L <= k; p += L)
    for (int r = 0; r < R; ++r)
      for (int l = 0; l < L; ++l) acc[r][l] += x[p + l] * w[r * k + p + l];
  for (int r = 0; r < R; ++r) {
    float tail = 0.f;
    for (int64_t q = p; q < k; ++q) tail += x[q] * w[r * k + q];
    for (int half = L / 2; half > 0; half /= 2)
      for (int l = 0; l < half; ++l) acc[r][l] += acc[r][l + half];
    out[r * out_stride] = acc[r][0] + tail;
  }
}

}  // namespace

// The portable table's gemv (dispatch.hpp); x86/gemv_*.cpp are the AVX2 and AVX-512 ones.
void gemv_rows_portable(const float* x, const float* w, int64_t k, int64_t rows, float* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) dots<4>(x, w + r * k, k, out + r, 1);
  for (; r < rows; ++r) dots<1>(x, w + r * k, k, out + r, 1);
}

namespace {

// out (n x o) = in (n x i) * W^T. Threads own contiguous runs of 16-row groups (one stream of
// weights each); a group's rows are read from memory once and then serve every sample from cache.
void gemv_forward(const Ctx& ctx, const float* in, const float* w, int64_t n, int64_t o, int64_t i,
                  float* out) {
  constexpr int64_t kGroup = 16;
  const auto rows = kernel_table().gemv_rows;
  const int64_t groups = (o + kGroup - 1) / kGroup;
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && o * i > kParallelWork)
  for (int64_t q = 0; q < groups; ++q) {
    const int64_t j0 = q * kGroup, m = std::min(kGroup, o - j0);
    for (int64_t s = 0; s < n; ++s) rows(in + s * i, w + j0 * i, i, m, out + s * o + j0);
  }
}

// gin (b x i) += gout (b x o) * W: rows of W scaled by gout and added in ascending order; threads
// own column slices of gin. Zero gradients (a projection starts from one unit) skip their row.
void gemv_backward(const Ctx& ctx, const float* gout, const float* w, int64_t b, int64_t o,
                   int64_t i, float* gin) {
  constexpr int64_t kSlice = 1024;  // columns per work item (4 KiB of each weight row)
  const int64_t slices = (i + kSlice - 1) / kSlice;
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (ctx.threads > 1 && o * i > kParallelWork)
  for (int64_t q = 0; q < slices; ++q) {
    const int64_t c0 = q * kSlice, m = std::min(kSlice, i - c0);
    for (int64_t r = 0; r < o; ++r) {
      const float* wr = w + r * i + c0;  // read once for every sample
      for (int64_t s = 0; s < b; ++s) {
        const float g = gout[s * o + r];
        if (g == 0.f) continue;
        float* d = gin + s * i + c0;
        for (int64_t k = 0; k < m; ++k) d[k] += g * wr[k];
      }
    }
  }
}

}  // namespace

void linear_forward(const Ctx& ctx, const Tensor& in, const Tensor& weight, const float* bias,
                    Tensor& out) {
  const int64_t n = in.shape().n, i = in.shape().sample(), o = weight.shape().n;
  if (ctx.reference)
    sgemm_ref(false, true, n, o, i, in.data(), i, weight.data(), i, out.data(), o, false);
  else if (n <= kGemvBatch)
    gemv_forward(ctx, in.data(), weight.data(), n, o, i, out.data());
  else
    sgemm(false, true, n, o, i, in.data(), i, weight.data(), i, out.data(), o, false, ctx.threads);
  if (bias)
    for (int64_t s = 0; s < n; ++s)
      for (int64_t j = 0; j < o; ++j) out.data()[s * o + j] += bias[j];
}

void linear_backward(const Ctx& ctx, const Tensor& gout, const Tensor& weight, Tensor& gin,
                     int64_t choose_batch) {
  const int64_t b = gout.shape().n, o = gout.shape().sample(), i = gin.shape().sample();
  if (ctx.reference)
    sgemm_ref(false, false, b, i, o, gout.data(), o, weight.data(), i, gin.data(), i, true);
  else if (std::max(b, choose_batch) <= kGemvBatch)
    gemv_backward(ctx, gout.data(), weight.data(), b, o, i, gin.data());
  else
    sgemm(false, false, b, i, o, gout.data(), o, weight.data(), i, gin.data(), i, true,
          ctx.threads);
}

}  // namespace pydeconv::kernels
