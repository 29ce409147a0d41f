// Direct convolution for few input channels (see direct_conv.hpp): the phase-split input copy,
// the task loop over (channel block, output row) and the portable micro-tile (the others: x86/,
// reached through the kernel table).
#include "direct_conv.hpp"

#include <algorithm>
#include <cstring>

#include "dispatch.hpp"
#include "scratch.hpp"

namespace pydeconv::kernels {
namespace {

constexpr int64_t kMaxK = 256;       // one multiply-add chain, as one KC block in the GEMM
constexpr int64_t kMaxChannels = 4;  // RGB, gray, RGBA inputs
constexpr int64_t kMaxStride = 8;
constexpr int64_t kOcAlign = 8;

// The phase-split input of one sample: per channel, `rows` padded rows of `s` phases of `wq`
// floats; phase q of padded row y holds padded columns q, q + s, ... (padded column j is input
// column j - pl; outside the input, 0).
struct Split {
  int64_t rows, s, wq;
  int64_t row_stride() const { return s * wq; }
  int64_t plane() const { return rows * s * wq; }
};

void split_input(const Ctx& ctx, const float* in, int64_t c, int64_t h, int64_t w, int64_t pt,
                 int64_t pl, const Split& sp, float* p) {
  const int64_t nrows = c * sp.rows;
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (ctx.threads > 1)
  for (int64_t i = 0; i < nrows; ++i) {
    const int64_t ch = i / sp.rows, y = i % sp.rows - pt;
    float* d = p + i * sp.row_stride();
    if (y < 0 || y >= h) {
      std::memset(d, 0, static_cast<size_t>(sp.row_stride()) * sizeof(float));
      continue;
    }
    const float* src = in + (ch * h + y) * w;
    for (int64_t q = 0; q < sp.s; ++q) {
      // Phase q's column j is input column j * s + q - pl: inside the input for j in [lo, hi).
      float* dq = d + q * sp.wq;
      const int64_t lo = std::min(sp.wq, std::max<int64_t>(0, (pl - q + sp.s - 1) / sp.s));
      const int64_t hi = std::max(lo, std::min(sp.wq, (w + pl - q + sp.s - 1) / sp.s));
      std::fill(dq, dq + lo, 0.f);
      const float* sq = src + lo * sp.s + q - pl;
      if (sp.s == 1) {
        std::copy(sq, sq + (hi - lo), dq + lo);
      } else if (sp.s == 2) {
        for (int64_t j = 0; j < hi - lo; ++j) dq[lo + j] = sq[2 * j];
      } else {
        for (int64_t j = 0; j < hi - lo; ++j) dq[lo + j] = sq[j * sp.s];
      }
      std::fill(dq + hi, dq + sp.wq, 0.f);
    }
  }
}

}  // namespace

bool direct_conv_fits(const Shape& ws, const Window2d& g, int64_t groups) {
  return groups == 1 && ws.c <= kMaxChannels && ws.c * ws.h * ws.w <= kMaxK && g.sw <= kMaxStride;
}

std::vector<float> direct_conv_pack(const Tensor& weight) {
  const Shape& ws = weight.shape();
  const int64_t k = ws.c * ws.h * ws.w, ldw = (ws.n + kOcAlign - 1) / kOcAlign * kOcAlign;
  std::vector<float> wt(static_cast<size_t>(k * ldw), 0.f);
  for (int64_t oc = 0; oc < ws.n; ++oc)
    for (int64_t t = 0; t < k; ++t)
      wt[static_cast<size_t>(t * ldw + oc)] = weight.data()[oc * k + t];
  return wt;
}

void direct_conv_forward(const Ctx& ctx, const Tensor& in, const std::vector<float>& wt,
                         const float* bias, const Window2d& g, Tensor& out, Tensor* relu_out,
                         TensorT<uint8_t>* relu_mask) {
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const KernelTable& kt = kernel_table();
  const auto tile = kt.direct_tile;
  const DirectShape& shape = *kt.direct_shape;
  const int64_t R = shape.r, seg = static_cast<int64_t>(shape.v) * shape.vw;
  const int64_t k = is.c * g.kh * g.kw, ldw = static_cast<int64_t>(wt.size()) / k;
  // Padded rows read: up to (oh - 1) * sh + (kh - 1) * dh; columns (per phase): up to
  // (ow - 1) + (kw - 1) * dw / sw, plus a whole vector segment past the last output.
  const int64_t reach = ((g.kw - 1) * g.dw) / g.sw;
  Split sp{(os.h - 1) * g.sh + (g.kh - 1) * g.dh + 1, g.sw, 0};
  sp.wq = (os.w + reach + seg + 15) / 16 * 16;
  std::vector<int64_t> off(static_cast<size_t>(k));
  for (int64_t c = 0, t = 0; c < is.c; ++c)
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx, ++t) {
        const int64_t col = kx * g.dw;
        off[static_cast<size_t>(t)] =
            c * sp.plane() + ky * g.dh * sp.row_stride() + (col % g.sw) * sp.wq + col / g.sw;
      }
  thread_local Scratch scratch;
  float* p = scratch.get(is.c * sp.plane());
  // A row's vectors split evenly into segments of at most V (ZFNet's 110 columns: 3 + 2 + 2
  // zmm, not 3 + 3 + 1, whose one-vector tail runs at the loads' rate, not the FMAs').
  const int64_t vw = shape.vw, nvec = (os.w + vw - 1) / vw;
  const int64_t segs = (nvec + shape.v - 1) / shape.v;
  const int64_t blocks = (os.c + R - 1) / R, tasks = os.h * blocks;
  for (int64_t n = 0; n < is.n; ++n) {
    split_input(ctx, in.plane(n, 0), is.c, is.h, is.w, g.pt, g.pl, sp, p);
    float* o = out.plane(n, 0);
    float* ro = relu_out ? relu_out->plane(n, 0) : nullptr;
    uint8_t* mo = relu_mask ? relu_mask->plane(n, 0) : nullptr;
    // Channel blocks outermost: a thread's consecutive tasks write the next rows of the same R
    // channel planes (2R sequential store streams with the mask), and read P from L2.
#pragma omp parallel for num_threads(ctx.threads) schedule(dynamic, 8) if (ctx.threads > 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t oy = task % os.h, co0 = task / os.h * R;
      DirectTile t;
      t.off = off.data();
      t.k = k;
      t.w = wt.data() + co0;
      t.ldw = ldw;
      t.rr = static_cast<int>(std::min(R, os.c - co0));
      t.bias = bias ? bias + co0 : nullptr;
      t.plane = os.plane();
      for (int64_t s = 0, v0 = 0; s < segs; ++s) {
        const int64_t v1 = nvec * (s + 1) / segs;
        const int64_t x0 = v0 * vw, at = co0 * os.plane() + oy * os.w + x0;
        t.src = p + oy * g.sh * sp.row_stride() + x0;
        t.n = static_cast<int>(std::min(v1 * vw, os.w) - x0);
        v0 = v1;
        t.out = o + at;
        t.relu = ro ? ro + at : nullptr;
        t.mask = mo ? mo + at : nullptr;
        tile(t);
      }
    }
  }
}

// The portable micro-tile: 4 rows x 16 columns (2 vectors of 8), in plain loops. acc += w * x
// is the portable GEMM kernel's arithmetic (no FMA on the baseline ISA), so the two paths agree
// here too.
const DirectShape direct_shape_portable{4, 2, 8};

void direct_tile_portable(const DirectTile& t) {
  constexpr int R = 4, N = 16;  // direct_shape_portable: r, v * vw
  float acc[R][N] = {};
  for (int64_t i = 0; i < t.k; ++i) {
    const float* s = t.src + t.off[i];
    const float* w = t.w + i * t.ldw;
    for (int r = 0; r < R; ++r) {
      const float wr = w[r];
      for (int j = 0; j < N; ++j) acc[r][j] += wr * s[j];
    }
  }
  for (int r = 0; r < t.rr; ++r) {
    const int64_t at = r * t.plane;
    for (int j = 0; j < t.n; ++j) {
      float v = acc[r][j];
      if (t.bias != nullptr) v = t.bias[r] + v;
      t.out[at + j] = v;
      if (t.relu != nullptr) t.relu[at + j] = v > 0.f ? v : 0.f;
      if (t.mask != nullptr) t.mask[at + j] = v > 0.f;
    }
  }
}

}  // namespace pydeconv::kernels
