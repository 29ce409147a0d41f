// -- issue 14: convt
// Depthwise convolution (groups == C == OC; MobileNet, EfficientNet, ConvNeXt's 7x7 aside): 3x3
// and 5x5 filters, stride 1 or 2, no dilation. The GEMM path runs one group at a time, a GEMM of
// one row (forward) or of K*K rows and one column of K (the transposed conv), mostly packing; here
// every plane is one task: the forward copies the plane once into a zero-padded buffer, split by
// column phase for stride 2 so that every tap reads consecutive floats, and sums the taps of each
// output row in registers; the backward scatters each region row's taps into a padded buffer and
// adds the rectangle it reached into gin. Each plane belongs to one thread: the same bits for any
// thread count.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/kernels.hpp"

namespace pydeconv::kernels {
namespace {

// Multiply-adds (outputs times taps) below which one thread runs: measured with
// bench/depthwise.py on this session's shared 2-core Zen 3, where a second thread gained nothing
// on MobileNetV2's 192x28x28 3x3 conv (1.35M, 0.2 ms on one thread) and ~10% on its 32x112x112
// one (3.6M).
constexpr int64_t kParallelWork = 1 << 21;

// One output row: out[x] = sum over taps t of w[t] * src_t[x], t = ki * K + kj in order, with
// src_t the padded (phase-split for stride 2) row ki at column offset kj's.
template <int K, int S>
void row(const float* const* rows, int64_t phase_w, const float* w, float bias, int64_t n,
         float* out) {
  const float* src[K * K];
  for (int ki = 0; ki < K; ++ki)
    for (int kj = 0; kj < K; ++kj) src[ki * K + kj] = rows[ki] + (kj % S) * phase_w + kj / S;
  if constexpr (K == 3) {  // all 9 taps in registers
    for (int64_t x = 0; x < n; ++x) {
      float acc = 0.0f;
      for (int t = 0; t < K * K; ++t) acc += w[t] * src[t][x];
      out[x] = acc + bias;
    }
    return;
  }
  // 5x5: one pass over the row per kernel row, its K taps summed in registers (25 pointers at
  // once spill: 4x slower on MobileNet's 240x28x28). Every output is still 0 + its taps in order,
  // then the bias.
  for (int ki = 0; ki < K; ++ki) {
    const float* const* s = src + ki * K;
    const float* wk = w + ki * K;
    for (int64_t x = 0; x < n; ++x) {
      float acc = ki == 0 ? 0.0f : out[x];
      for (int kj = 0; kj < K; ++kj) acc += wk[kj] * s[kj][x];
      out[x] = ki == K - 1 ? acc + bias : acc;
    }
  }
}

template <int K, int SH, int SW>
void forward_plane(const float* in, int64_t h, int64_t w, const float* wt, float bias,
                   const Window2d& g, int64_t oh, int64_t ow, float* out, float* relu,
                   uint8_t* mask, std::vector<float>& buf) {
  // Padded rows [-pt, (oh-1)*SH - pt + K), columns [-pl, (ow-1)*SW - pl + K); with SW = 2 each
  // row is stored as its even then its odd columns (phase_w floats each).
  const int64_t ph = (oh - 1) * SH + K, pw = (ow - 1) * SW + K;
  const int64_t phase_w = (pw + SW - 1) / SW, row_w = phase_w * SW;
  buf.assign(static_cast<size_t>(ph * row_w), 0.0f);
  for (int64_t py = 0; py < ph; ++py) {
    const int64_t iy = py - g.pt;
    if (iy < 0 || iy >= h) continue;
    const float* s = in + iy * w;
    float* d = buf.data() + py * row_w;
    const int64_t x0 = std::max<int64_t>(0, g.pl), x1 = std::min<int64_t>(pw, w + g.pl);
    if (x0 >= x1) continue;
    if constexpr (SW == 1) {
      std::copy(s + x0 - g.pl, s + x1 - g.pl, d + x0);
    } else {
      for (int q = 0; q < SW; ++q) {  // phase q: padded columns q, q + SW, ...
        float* dq = d + q * phase_w;
        for (int64_t px = x0 + ((q - x0 % SW) + SW) % SW; px < x1; px += SW)
          dq[px / SW] = s[px - g.pl];
      }
    }
  }
  const float* rows[K];
  for (int64_t oy = 0; oy < oh; ++oy) {
    for (int ki = 0; ki < K; ++ki) rows[ki] = buf.data() + (oy * SH + ki) * row_w;
    float* o = out + oy * ow;
    row<K, SW>(rows, phase_w, wt, bias, ow, o);
    if (relu != nullptr) {
      float* r = relu + oy * ow;
      uint8_t* m = mask != nullptr ? mask + oy * ow : nullptr;
      for (int64_t x = 0; x < ow; ++x) {
        const float v = o[x];
        if (m != nullptr) m[x] = v > 0.0f;
        r[x] = v > 0.0f ? v : 0.0f;
      }
    }
  }
}

using ForwardPlane = void (*)(const float*, int64_t, int64_t, const float*, float, const Window2d&,
                              int64_t, int64_t, float*, float*, uint8_t*, std::vector<float>&);

ForwardPlane forward_for(const Window2d& g) {
  const int code = (g.kh == 5 ? 4 : 0) + (g.sh == 2 ? 2 : 0) + (g.sw == 2 ? 1 : 0);
  static const ForwardPlane table[8] = {forward_plane<3, 1, 1>, forward_plane<3, 1, 2>,
                                        forward_plane<3, 2, 1>, forward_plane<3, 2, 2>,
                                        forward_plane<5, 1, 1>, forward_plane<5, 1, 2>,
                                        forward_plane<5, 2, 1>, forward_plane<5, 2, 2>};
  return table[code];
}

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
  const ForwardPlane f = forward_for(g);
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
