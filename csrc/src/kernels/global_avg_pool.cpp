// Global average pooling (each plane to its mean, summed in double) and its backward, which
// spreads each value evenly over the whole plane.
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

void global_avg_pool_forward(const Ctx& ctx, const Tensor& in, Tensor& out) {
  if (ctx.reference) return global_avg_pool_forward_ref(in, out);
  const int64_t planes = in.shape().n * in.shape().c, hw = in.shape().plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    double acc = 0.0;
    for (int64_t i = 0; i < hw; ++i) acc += in.data()[p * hw + i];
    out.data()[p] = static_cast<float>(acc / double(hw));
  }
}

void global_avg_pool_backward(const Ctx& ctx, const Tensor& gout, Tensor& gin) {
  if (ctx.reference) return global_avg_pool_backward_ref(gout, gin);
  const int64_t planes = gin.shape().n * gin.shape().c, hw = gin.shape().plane();
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const float share = gout.data()[p] / float(hw);
    for (int64_t i = 0; i < hw; ++i) gin.data()[p * hw + i] += share;
  }
}

}  // namespace pydeconv::kernels
