// Direct convolution for layers with few input channels (a network's first conv: RGB, gray or
// RGBA input, e.g. ZFNet's 7x7/2 conv1 and VGG16's 3x3 conv1_1), where the GEMM's K = C*KH*KW is
// short (27 to ~250) and packing the implicit im2col costs as much as the multiply-adds.
//
// The input is copied once per call into a zero-padded, phase-split buffer P: for stride s along
// x, each padded row is stored as s phases, phase q holding padded columns q, q + s, q + 2s, ...
// Then for every tap (c, ky, kx) the inputs of VW consecutive output columns are one contiguous
// vector load, P[c][oy*sh + ky*dh][(kx*dw) % s][ox + (kx*dw) / s ...], with no bounds checks and
// no gathers. A micro-tile is R output channels x V vectors of one output row: per tap, V loads
// of P and R broadcasts of a weight, R*V FMAs.
//
// Every output is one multiply-add chain over the taps in im2col order (c, ky, kx), starting at 0,
// plus the bias at the end: the same arithmetic as the GEMM path's micro-kernels (K <= 256 is one
// KC block there), so the two paths give the same bits.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu.hpp"
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

// Whether conv2d_forward takes the direct kernel for this weight shape (OC, C/groups, KH, KW)
// and geometry: one group, at most 4 input channels, C*KH*KW <= 256, stride <= 8. Weights are
// packed for it at load when they fit with stride 1 (Window2d{}).
bool direct_conv_fits(const Shape& weight, const Window2d& g, int64_t groups);
// The direct kernel's weights: W^T, K rows of OC floats (OC rounded up to 8, zero-padded).
std::vector<float> direct_conv_pack(const Tensor& weight);
// out = conv(in) + bias, with the fused ReLU as in conv2d_forward; `wt` from direct_conv_pack.
void direct_conv_forward(const Ctx& ctx, const Tensor& in, const std::vector<float>& wt,
                         const float* bias, const Window2d& g, Tensor& out, Tensor* relu_out,
                         TensorT<uint8_t>* relu_mask);

// One micro-tile: output channels [co0, co0 + rr) (rr <= the ISA's R) of one output row,
// columns [x0, x0 + n) with n <= the ISA's V * VW.
struct DirectTile {
  const float* src;    // P at (row oy * sh of channel 0, phase 0, column x0)
  const int64_t* off;  // k tap offsets into P, in im2col order
  int64_t k;
  const float* w;  // transposed weights at (tap 0, channel co0): w[t * ldw + r]
  int64_t ldw;
  int rr, n;
  const float* bias;  // bias + co0, or null
  float* out;         // output row of channel co0 at column x0; channels `plane` floats apart
  float* relu;        // the fused ReLU's output (may be out), or null
  uint8_t* mask;      // its mask (same layout), or null
  int64_t plane;
};

// Prefetches every line a tile's epilogue will write (outputs, ReLU outputs, mask bytes), before
// its tap loop: stores that miss stall the tile once the store buffer fills. Shared by the
// micro-tiles of every ISA.
inline void touch_tile(const DirectTile& t) {
  auto touch = [](const void* p, int64_t bytes) {
    const char* c = static_cast<const char*>(p);
    for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(c + i, 1, 3);
    __builtin_prefetch(c + bytes - 1, 1, 3);
  };
  for (int r = 0; r < t.rr; ++r) {
    touch(t.out + r * t.plane, 4 * t.n);
    if (t.relu != nullptr && t.relu != t.out) touch(t.relu + r * t.plane, 4 * t.n);
    if (t.mask != nullptr) touch(t.mask + r * t.plane, t.n);
  }
}

// Micro-tile shapes (rows R, up to V vectors of VW floats), each defined next to its tile, so
// the driver's tiling can never disagree with it. R must divide 8 (direct_conv_pack's padding).
struct DirectShape {
  int r, v, vw;
};

void direct_tile_portable(const DirectTile& t);
extern const DirectShape direct_shape_portable;
#if PYDECONV_X86
void direct_tile_avx2(const DirectTile& t);  // x86/direct_conv_avx2.cpp
extern const DirectShape direct_shape_avx2;
void direct_tile_avx512(const DirectTile& t);  // x86/direct_conv_avx512.cpp
extern const DirectShape direct_shape_avx512;
#endif

}  // namespace pydeconv::kernels
