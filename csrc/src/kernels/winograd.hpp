// Winograd F(T x T, 3x3), T = 2 or 4, for 3x3, stride-1, undilated, ungrouped convolutions: each
// T x T block of outputs ("tile") costs alpha^2 (alpha = T + 2) multiply-adds per (input, output)
// channel pair instead of 9 T^2, so the GEMM work drops 2.25x (F(2x2): 16 for 36) or 4x
// (F(4x4): 36 for 144). Used by the forward conv and, with the filters flipped and transposed, by
// the transposed conv of the projection (restricted to each sample's region). A cost model picks
// F(2x2), F(4x4) or the direct GEMM per call (winograd_tile; the transposed conv sets a lower bar
// for F(4x4): large regions only).
//
//   V = B^T d B   (alpha x alpha input patch d per tile and source channel)
//   U = G g G^T   (per filter, computed per call from the layer's packed weights)
//   M[xi] = U[xi] * V[xi]  for the alpha^2 positions xi: GEMMs (dst channels x src channels x
//   tiles) Y = A^T M A   (T x T outputs per tile)
// F(2x2)'s transforms use only +, - and * 0.5 (exact in binary); F(4x4)'s have larger
// coefficients and rounded sixths. Either way the result differs from the direct convolution by
// rounding only (relative error ~1e-6 in float32; tests/test_winograd.py, tests/cpp/test_conv).
//
// U is rebuilt per call (a second weight copy, 1.8x or 4x the weights, costs more memory than
// most transforms cost time), except where the layer's WinoCache keeps it: small maps, where the
// transform of all the filters is a large share of every call. When U for all destination
// channels fits 4 MiB it is built once per call, else per block of tiles and of 48 destination
// channels, in the calling thread's L2. V is written straight into the GEMM's packed B layout and
// U into its packed A layout, so the GEMMs pack nothing.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

// Outputs [y0, y1) x [x0, x1) of one sample. Output (y, x) reads source rows y - pt .. y - pt + 2
// and columns x - pl .. x - pl + 2; source positions outside [sy0, sy1) x [sx0, sx1) (a rectangle
// inside the planes) read as zero.
struct WinoRect {
  const float* src = nullptr;  // the sample's first source plane
  float* dst = nullptr;        // the sample's first destination plane
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  int64_t sy0 = 0, sy1 = 0, sx0 = 0, sx1 = 0;
  // Forward only, optional: relu(result) also goes here (may be dst itself: then only the
  // rectified values are written), and [result > 0] into mask.
  float* relu_dst = nullptr;
  uint8_t* mask = nullptr;
};

struct WinoConv {
  int64_t k_ch = 0, m_ch = 0;  // source channels (the GEMMs' k), destination channels (their m)
  int64_t sh = 0, sw = 0;      // source plane size
  int64_t dh = 0, dw = 0;      // destination plane size
  int64_t pt = 0, pl = 0;      // top / left padding of the source
  // false: dst[m] = sum_k W[m][k] (*) src[k] + bias (the layer's forward conv, W = weights);
  // true:  dst[m] += sum_k flip(W[k][m]) (*) src[k] (its transposed conv as a forward conv of
  //        gout: m = the layer's input channels, k = its output channels).
  bool transposed = false;
  bool overwrite = false;       // transposed only: dst = result, not dst += result
  const float* bias = nullptr;  // forward only; may be null
  int64_t tile = 2;             // output tile: 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3))
  WinoCache* cache = nullptr;   // forward only; may be null
};

// A forward conv's transformed filters (U for every destination channel, in the layout of one
// call's row blocks), kept once a call has found the filter transform to be a large share of its
// cost (kCacheShare in winograd.cpp) and the net's budget had room. Valid only for calls with the
// same tile size, row-block height and instruction set (others transform per call). Thread-safe:
// the first qualifying call fills it under the mutex; later calls read it.
struct WinoCache {
  std::shared_ptr<std::atomic<int64_t>> budget;  // bytes the net's caches may still take
  std::mutex mu;
  bool settled = false;  // filled, or the budget refused: never try again
  int tile = 0, isa = -1;
  int64_t rows = 0, bytes = 0;
  std::shared_ptr<const float> u;
};

// weights: the layer's forward GEMM packing of W, (OC) x (C * 9).
void winograd_conv3x3(const Ctx& ctx, const WinoConv& wc, const PackedA& weights,
                      const std::vector<WinoRect>& rects);

// Whether the layer's geometry allows Winograd F(2x2, 3x3): 3x3, stride 1, no dilation, no groups.
bool winograd_geometry(const Window2d& g, int64_t groups);

// The output rectangles of one call, counted for the cost model.
struct WinoCount {
  int64_t pixels = 0, tiles2 = 0, tiles4 = 0;  // outputs, 2x2 tiles, 4x4 tiles
  void add(int64_t h, int64_t w) {
    pixels += h * w;
    tiles2 += ((h + 1) / 2) * ((w + 1) / 2);
    tiles4 += ((h + 3) / 4) * ((w + 3) / 4);
  }
};

// The tile size (2 or 4) of the cheaper Winograd variant, if it costs less than `slack` times
// the direct GEMM for m x k channels over these outputs; 0 (direct GEMM) otherwise. In the forced
// modes 2 and 4, that tile size whenever m >= 8 and k >= 16. Cost model: GEMM multiply-adds plus
// the transforms, in units of one multiply-add per (m, k) channel pair. F(4x4) is considered only
// when `four`. F(4x4) is taken (`four`) where it costs under `four_ratio` times F(2x2).
int winograd_tile(int64_t m, int64_t k, const WinoCount& n, double slack = 0.85, bool four = true,
                  double four_ratio = 0.9);

}  // namespace pydeconv::kernels
