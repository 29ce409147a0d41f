// What an SGEMM micro-kernel does with a full tile once its k loop is done, besides C = acc or
// C = C + acc: start from the bias, and apply the ReLU of a conv + ReLU while the tile is still
// in registers (the driver builds one per tile; see gemm.cpp). Shared by the AVX2, AVX-512 and
// portable kernels, which must give the same bits as the two-pass form they replace:
//   C = bias[r] + acc          (bias never combines with accumulate: the driver keeps that case)
//   relu[r][j] = C > 0 ? C : 0 (NaN -> 0: max(C, 0) with 0 as the second operand)
//   mask[r][j] = C > 0
#pragma once
#include <cstdint>

namespace pydeconv::kernels {

struct TileEpilogue {
  const float* bias = nullptr;  // the tile's first row's bias, or null
  float* relu = nullptr;        // the tile's ReLU output (row stride = C's ldc; may be C), or null
  uint8_t* mask = nullptr;      // its mask (same layout, one byte per element), or null
};

}  // namespace pydeconv::kernels
