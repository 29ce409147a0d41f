// One run of a forward ReLU: y[i] = max(x[i], 0) (NaN -> 0) and, when mask is not null,
// mask[i] = x[i] > 0. Shared by relu_forward and the GEMM's ReLU epilogue. In place (y == x) the
// loop uses one pointer: with two that alias, the vectoriser's overlap check takes its scalar
// path.
#pragma once
#include <cstdint>

namespace pydeconv::kernels {

inline void relu_run(const float* x, float* y, uint8_t* mask, int64_t n) {
  if (mask != nullptr)
    for (int64_t i = 0; i < n; ++i) mask[i] = x[i] > 0.f;
  if (y == x) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] > 0.f ? y[i] : 0.f;
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
  }
}

}  // namespace pydeconv::kernels
