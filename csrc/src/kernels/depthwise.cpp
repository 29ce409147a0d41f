// Depthwise convolution (groups == C == OC; MobileNet, EfficientNet, ConvNeXt's 7x7 aside): 3x3
// and 5x5 filters, stride 1 or 2, no dilation. The GEMM path runs one group at a time, a GEMM of
// one row (forward) or of K*K rows and one column of K (the transposed conv), mostly packing; here
// every plane is one task: the forward copies the plane once into a zero-padded buffer, split by
// column phase for stride 2 so that every tap reads consecutive floats, and sums the taps of each
// output row in registers; the backward scatters each region row's taps into a padded buffer and
// adds the rectangle it reached into gin. Each plane belongs to one thread: the same bits for any
// thread count. The forward's plane kernels (depthwise_fwd.inc) are built once per ISA and reached
// through the kernel table: AVX-512 runs each output row 16 lanes wide with FMAs.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/dispatch.hpp"
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

#define PYDECONV_DW_FOR depthwise_plane_for_portable
#include "depthwise_fwd.inc"
#undef PYDECONV_DW_FOR

namespace {

// Multiply-adds (outputs times taps) below which one thread runs: measured with
// bench/depthwise.py on this session's shared 2-core Zen 3, where a second thread gained nothing
// on MobileNetV2's 192x28x28 3x3 conv (1.35M, 0.2 ms on one thread) and ~10% on its 32x112x112
// one (3.6M).
constexpr int64_t kParallelWork = 1 << 21;

// gin += the taps of gout's region r scattered back: T (rows ((r rows)-1)*SH + K, columns
// ((r cols)-1)*SW + K) starts at gin (r.y0*SH - pt, r.x0*SW - pl).
template <int K, int SH, int SW>
void backward_plane(const float* gout, int64_t gw, const Region& r, const float* wt,
                    const Window2d& g, float* gin, int64_t h, int64_t w, std::vector<float>& buf) {
  const int64_t rh = r.y1 - r.y0, rw = r.x1 - r.x0;
  const int64_t th = (rh - 1) * SH + K, tw = (rw - 1) * SW + K;
  buf.assign(static_cast<size_t>(th * tw), 0.0f);
  for (int64_t y = 0; y < rh; ++y) {
    const float* gr = gout + (r.y0 + y) * gw + r.x0;
    for (int ki = 0; ki < K; ++ki) {
      float* t = buf.data() + (y * SH + ki) * tw;
      for (int kj = 0; kj < K; ++kj) {
        const float wv = wt[ki * K + kj];
        float* d = t + kj;
        for (int64_t x = 0; x < rw; ++x) d[x * SW] += wv * gr[x];
      }
    }
  }
  const int64_t oy = r.y0 * SH - g.pt, ox = r.x0 * SW - g.pl;
  const int64_t y0 = std::max<int64_t>(0, oy), y1 = std::min<int64_t>(h, oy + th);
  const int64_t x0 = std::max<int64_t>(0, ox), x1 = std::min<int64_t>(w, ox + tw);
  for (int64_t y = y0; y < y1; ++y) {
    const float* t = buf.data() + (y - oy) * tw - ox;
    float* d = gin + y * w;
    for (int64_t x = x0; x < x1; ++x) d[x] += t[x];
  }
}

using BackwardPlane = void (*)(const float*, int64_t, const Region&, const float*, const Window2d&,
                               float*, int64_t, int64_t, std::vector<float>&);

BackwardPlane backward_for(const Window2d& g) {
  const int code = (g.kh == 5 ? 4 : 0) + (g.sh == 2 ? 2 : 0) + (g.sw == 2 ? 1 : 0);
  static const BackwardPlane table[8] = {backward_plane<3, 1, 1>, backward_plane<3, 1, 2>,
                                         backward_plane<3, 2, 1>, backward_plane<3, 2, 2>,
                                         backward_plane<5, 1, 1>, backward_plane<5, 1, 2>,
                                         backward_plane<5, 2, 1>, backward_plane<5, 2, 2>};
  return table[code];
}

}  // namespace

// Read at every call (once per conv call, not per plane), so that bench/depthwise.py can time
// both paths in one process.
bool depthwise_enabled() {
  const char* v = std::getenv("PYDECONV_DEPTHWISE");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

bool depthwise_weights_fit(const Shape& ws, int64_t groups) {
  return ws.rank == 4 && ws.c == 1 && groups == ws.n && groups > 1 && ws.h == ws.w &&
         (ws.h == 3 || ws.h == 5);
}

bool depthwise_fits(const Shape& ws, const Window2d& g, int64_t groups) {
  return depthwise_weights_fit(ws, groups) && g.dh == 1 && g.dw == 1 && g.sh <= 2 && g.sw <= 2 &&
         g.kh == ws.h && g.kw == ws.w;
}

void depthwise_forward(const Ctx& ctx, const Tensor& in, const float* w, const float* bias,
                       const Window2d& g, Tensor& out, Tensor* relu_out,
                       TensorT<uint8_t>* relu_mask) {
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int64_t planes = os.n * os.c, kk = g.kh * g.kw;
  const DepthwisePlane f = kernel_table().depthwise_plane_for(g);
  const bool par = ctx.threads > 1 && out.numel() * kk >= kParallelWork;
#pragma omp parallel num_threads(ctx.threads) if (par)
  {
    std::vector<float> buf;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t n = p / os.c, c = p % os.c;
      f(in.plane(n, c), is.h, is.w, w + c * kk, bias ? bias[c] : 0.0f, g, os.h, os.w,
        out.plane(n, c), relu_out ? relu_out->plane(n, c) : nullptr,
        relu_mask ? relu_mask->plane(n, c) : nullptr, buf);
    }
  }
}

void depthwise_backward(const Ctx& ctx, const Tensor& gout, const Regions& r, const float* w,
                        const Window2d& g, Tensor& gin) {
  const Shape& gs = gout.shape();
  const Shape& is = gin.shape();
  const int64_t kk = g.kh * g.kw;
  std::vector<int64_t> planes;
  int64_t work = 0;
  for (int64_t b = 0; b < gs.n; ++b) {
    const Region& q = r[static_cast<size_t>(b)];
    if (q.empty()) continue;
    for (int64_t c = 0; c < gs.c; ++c) planes.push_back(b * gs.c + c);
    work += gs.c * (q.y1 - q.y0) * (q.x1 - q.x0) * kk;
  }
  const BackwardPlane f = backward_for(g);
  const int64_t np = static_cast<int64_t>(planes.size());
  const bool par = ctx.threads > 1 && work >= kParallelWork;
#pragma omp parallel num_threads(ctx.threads) if (par)
  {
    std::vector<float> buf;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < np; ++i) {
      const int64_t b = planes[static_cast<size_t>(i)] / gs.c;
      const int64_t c = planes[static_cast<size_t>(i)] % gs.c;
      f(gout.plane(b, c), gs.w, r[static_cast<size_t>(b)], w + c * kk, g, gin.plane(b, c), is.h,
        is.w, buf);
    }
  }
}

}  // namespace pydeconv::kernels
