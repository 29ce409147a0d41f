// Winograd F(2x2, 3x3): see winograd.hpp for the method.
//
// Work is cut into blocks of tiles (whole tile rows where they fit), sized so the transformed
// input of a block (16 x k_ch x tiles floats) stays within a few MiB. Per block:
//   1. input transform, threads split the source channels: V[xi] in packed-B layout;
//   2. threads take blocks of <= 48 destination channels: U[xi] for those rows (packed-A
//      layout), the 16 GEMMs into M (rows x tiles each), then the output transform of those rows.
// Every output element is computed by the same operations in the same order whatever the thread
// count (threads only choose which rows/channels they do), so results are bit-identical run to
// run and across thread counts.
#include "winograd.hpp"

#include "cpu.hpp"
#include "scratch.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

#define PYDECONV_WINO_FN(name) name##_portable
#include "winograd_kernels.inc"

namespace pydeconv::kernels {

#if PYDECONV_X86
#define PYDECONV_WINO_DECLARE(isa)                                                              \
  void wino_filter_##isa(const float* __restrict__, int64_t, float* __restrict__, int64_t);    \
  void wino_input_##isa(const float*, const float*, const float*, const float*, int64_t,       \
                        float* __restrict__, int64_t);                                         \
  void wino_output_##isa(const float* const*, int64_t, float* __restrict__, float* __restrict__);
PYDECONV_WINO_DECLARE(avx2)
PYDECONV_WINO_DECLARE(avx512)
#undef PYDECONV_WINO_DECLARE
#endif

namespace {

constexpr int64_t NR = kSgemmNR, MR = kSgemmMR;
constexpr int64_t kXi = 16;                  // 4 x 4 transform positions
constexpr int64_t kVBudget = 1 << 20;        // floats of V per block (4 MiB)
constexpr int64_t kMaxBlockTiles = 1024;    // tiles per block at most
constexpr int64_t kSmallKTiles = 128;  // tiles per block for k <= 128 source channels
constexpr int64_t kRowsPerBlock = 48;        // destination channels per GEMM block (8 A panels)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Tiles per block at most for k source channels. With few channels the filter transform per
// block is cheap and the block's V and M should stay in L2 (128 tiles: 0.5-1 MiB each for
// k <= 128; measured 1.3-1.5x faster on VGG16's 64/128-channel layers than 1024 tiles); with
// many, blocks are as large as the V budget allows (a multiple of NR), so the transform of the
// k x m filters is amortised over more tiles.
int64_t max_block_tiles(int64_t k) {
  return k <= 128 ? kSmallKTiles
                  : std::clamp<int64_t>(kVBudget / (kXi * k) / NR * NR, NR, kMaxBlockTiles);
}

std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> flag{[] {
    const char* e = std::getenv("PYDECONV_WINOGRAD");
    return !(e != nullptr && e[0] == '0');
  }()};
  return flag;
}

// Buffers reused across calls by the calling thread (scratch.hpp).
thread_local Scratch tl_v, tl_work;

// A run of `count` consecutive tiles of one tile row of one rectangle: tile tx covers outputs
// (y, x) with y = rect.y0 + 2 * ty + {0, 1}, x = rect.x0 + 2 * (tx0 + tx) + {0, 1}. `t0` is the
// block column of its first tile.
struct Seg {
  int64_t rect, ty, tx0, count, t0;
};

// Per-thread work buffers, carved from one allocation made before the parallel regions.
struct Work {
  float* v;       // V: 16 packed B matrices (k x tiles), shared unless threads take whole blocks
  float* rowbuf;  // 4 zero-padded source rows of a segment: 4 x (2 * seg + 2)
  float* plain;   // the filters of a row block, untransformed
  float* u;       // 16 packed A matrices (mpad x k)
  float* m;       // 16 GEMM results (mpad x tpad)
};

// Strides between the 16 per-position matrices: padded so the 16 streams a transform writes or
// reads do not all fall on the same L1 sets (sizes that are multiples of 4 KiB otherwise alias).
int64_t xi_stride(int64_t size) { return round_up(size, 16) + 16; }

// The filters of destination rows [r0, r0 + rows) as plain taps, panel-major like the packed A
// they become: f(i, c, tap) at plain[((i / 6 * kch + c) * 9 + tap) * 6 + i % 6] for kch source
// channels, rows past `rows` zero. Forward: row i is output channel r0 + i and f = W[r0 + i][c]
// (r0 a multiple of 6: each chunk is a straight copy from the forward packing). Transposed: row
// i is input channel r0 + i, c an output channel, and f = W[c][r0 + i] flipped in space.
void gather_filters(const PackedA& w, bool transposed, int64_t r0, int64_t rows, int64_t mpad,
                    float* plain) {
  const int64_t m = w.m(), k = w.k(), kc = sgemm_kc(k), pm = ceil_div(m, MR);
  const int64_t kch = transposed ? m : k / 9;  // source channels
  const float* data = w.data();
  // W packed as (OC) x (C * 9): panel ip holds rows (output channels) ip*6 .. ip*6 + 5.
  if (!transposed) {  // whole panels (rows past m are zero in the packing): copies fill plain
    for (int64_t pc = 0; pc < k; pc += kc) {
      const int64_t kcb = std::min(kc, k - pc);
      for (int64_t ip = r0 / MR; ip * MR < r0 + rows; ++ip)
        std::memcpy(plain + ((ip - r0 / MR) * k + pc) * MR, data + pc * pm * MR + ip * kcb * MR,
                    static_cast<size_t>(kcb * MR) * 4);
    }
    return;
  }
  std::fill(plain, plain + kch * 9 * mpad, 0.0f);  // rows past `rows` stay zero
  for (int64_t pc = r0 * 9 / kc * kc; pc < (r0 + rows) * 9; pc += kc) {
    const int64_t kcb = std::min(kc, k - pc);
    const int64_t p0 = std::max(r0 * 9, pc), p1 = std::min((r0 + rows) * 9, pc + kcb);
    for (int64_t ip = 0; ip < pm; ++ip) {
      const float* panel = data + pc * pm * MR + ip * kcb * MR;
      const int64_t lanes = std::min(m, ip * MR + MR) - ip * MR;
      // Column p = ci * 9 + tap of the source: row ci - r0 of the destination, flipped tap.
      for (int64_t ci = p0 / 9; ci * 9 < p1; ++ci) {
        const int64_t row = ci - r0, t0 = std::max<int64_t>(0, p0 - ci * 9);
        const int64_t t1 = std::min<int64_t>(9, p1 - ci * 9);
        float* base = plain + (row / MR * kch * 9 + ip * MR * 9) * MR + row % MR;
        const float* src = panel + (ci * 9 - pc) * MR;
        for (int64_t l = 0; l < lanes; ++l) {
          float* d = base + l * 9 * MR;
          for (int64_t tap = t0; tap < t1; ++tap) d[(8 - tap) * MR] = src[tap * MR + l];
        }
      }
    }
  }
}

constexpr int64_t kChanBlock = 8, kLanes = kChanBlock * MR;  // filters per transform call

// The transform loops (winograd_kernels.inc), built for the baseline ISA here and for AVX2 /
// AVX-512 in x86/winograd_*.cpp; one set is picked per call with the GEMM's instruction set.
struct TransformFns {
  void (*filter)(const float*, int64_t, float*, int64_t);
  void (*input)(const float*, const float*, const float*, const float*, int64_t, float*, int64_t);
  void (*output)(const float* const*, int64_t, float*, float*);
};
TransformFns transform_fns();

class Winograd {
 public:
  Winograd(const Ctx& ctx, const WinoConv& wc, const PackedA& w, const std::vector<WinoRect>& rects)
      : wc_(wc), w_(w), rects_(rects), fn_(transform_fns()) {
    threads_ = std::max(ctx.threads, 1);
    k_ = wc.k_ch, m_ = wc.m_ch;
    kc_ = sgemm_kc(k_);
    tmax_ = max_block_tiles(k_);
    // Blocks of (nearly) equal size, a multiple of the thread count when there are several.
    int64_t total = 0;
    for (const WinoRect& rc : rects_)
      if (rc.y1 > rc.y0 && rc.x1 > rc.x0) total += ceil_div(rc.y1 - rc.y0, 2) * ceil_div(rc.x1 - rc.x0, 2);
    int64_t nb = ceil_div(total, tmax_);
    if (nb > 1) nb = round_up(nb, threads_);
    target_ = std::min(tmax_, std::max(NR, ceil_div(total, std::max<int64_t>(nb, 1))));
    segments();
    // Threads take whole blocks when there are enough of them (big maps); otherwise they share
    // each block: the source channels for the input transform, row blocks for the GEMMs.
    by_blocks_ = threads_ > 1 && static_cast<int64_t>(block_start_.size()) - 1 >= threads_;
    rows_ = kRowsPerBlock;
    if (!by_blocks_ && threads_ > 1) {
      // Row blocks of 48 or 24 (whole 24-row AVX-512 tiles), whichever keeps the busiest thread
      // shorter (blocks dealt round-robin).
      auto busiest = [&](int64_t r) {
        const int64_t n = ceil_div(m_, r);
        int64_t most = 0;
        for (int64_t t = 0; t < threads_; ++t) {
          int64_t sum = 0;
          for (int64_t b = t; b < n; b += threads_) sum += round_up(std::min(r, m_ - b * r), MR);
          most = std::max(most, sum);
        }
        return most;
      };
      if (busiest(24) * 10 < busiest(48) * 9) rows_ = 24;
    }
  }

  // Tiles in the block ending at segment s1 (its columns, before padding to NR).
  int64_t block_tiles(size_t s1) const { return segs_[s1 - 1].t0 + segs_[s1 - 1].count; }

  void run() {
    if (segs_.empty()) return;
    // Buffers for the largest block, allocated before any parallel region.
    const int64_t tpad = round_up(target_, NR), mpad = round_up(rows_, MR);
    v_stride_ = xi_stride(sgemm_packed_b_size(k_, tpad));
    const int64_t nv = by_blocks_ ? threads_ : 1;
    float* v = tl_v.get(kXi * v_stride_ * nv);
    const int64_t rowbuf = 4 * (2 * target_ + 2), plain = mpad * k_ * 9;
    const int64_t u = kXi * xi_stride(sgemm_packed_a_size(mpad, k_));
    const int64_t mm = kXi * xi_stride(mpad * tpad);
    const int64_t per = round_up(rowbuf, 16) + round_up(plain, 16) + round_up(u, 16) + round_up(mm, 16);
    float* base = tl_work.get(per * threads_);
    std::vector<Work> work(static_cast<size_t>(threads_));
    for (int t = 0; t < threads_; ++t) {
      float* p = base + per * t;
      Work& wk = work[static_cast<size_t>(t)];
      wk.v = v + (by_blocks_ ? kXi * v_stride_ * t : 0);
      wk.rowbuf = p, p += round_up(rowbuf, 16);
      wk.plain = p, p += round_up(plain, 16);
      wk.u = p, p += round_up(u, 16);
      wk.m = p;
    }
    const int64_t nblocks = static_cast<int64_t>(block_start_.size()) - 1;
    if (by_blocks_) {
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
      for (int64_t b = 0; b < nblocks; ++b) {
#ifdef _OPENMP
        Work& wk = work[static_cast<size_t>(omp_get_thread_num())];
#else
        Work& wk = work[0];
#endif
        const size_t s0 = block_start_[static_cast<size_t>(b)], s1 = block_start_[static_cast<size_t>(b) + 1];
        const int64_t bt = round_up(block_tiles(s1), NR);
        for (int64_t c = 0; c < k_; ++c) input_transform(c, s0, s1, bt, wk.v, wk);
        for (int64_t r0 = 0; r0 < m_; r0 += rows_) gemm_rows(r0, std::min(m_, r0 + rows_), s0, s1, bt, wk.v, wk);
      }
      return;
    }
    for (int64_t b = 0; b < nblocks; ++b) {
      const size_t s0 = block_start_[static_cast<size_t>(b)], s1 = block_start_[static_cast<size_t>(b) + 1];
      run_block(s0, s1, round_up(block_tiles(s1), NR), work);
    }
  }

 private:
  // Tile rows of every rectangle, cut into segments of at most target_ tiles, grouped into blocks
  // of at most target_ tiles.
  void segments() {
    int64_t t = 0;
    block_start_.push_back(0);
    for (size_t r = 0; r < rects_.size(); ++r) {
      const WinoRect& rc = rects_[r];
      if (rc.y1 <= rc.y0 || rc.x1 <= rc.x0) continue;
      const int64_t th = ceil_div(rc.y1 - rc.y0, 2), tw = ceil_div(rc.x1 - rc.x0, 2);
      for (int64_t ty = 0; ty < th; ++ty)
        for (int64_t tx = 0; tx < tw; tx += target_) {
          const int64_t count = std::min(target_, tw - tx);
          if (t + count > target_) {  // close the block
            block_start_.push_back(segs_.size());
            t = 0;
          }
          segs_.push_back({static_cast<int64_t>(r), ty, tx, count, t});
          t += count;
        }
    }
    if (block_start_.back() != segs_.size()) block_start_.push_back(segs_.size());
  }

  void run_block(size_t s0, size_t s1, int64_t tpad, std::vector<Work>& work) {
    float* v = work[0].v;
    const int64_t nblk = ceil_div(m_, rows_);
#pragma omp parallel num_threads(threads_) if (threads_ > 1)
    {
#ifdef _OPENMP
      Work& wk = work[static_cast<size_t>(omp_get_thread_num())];
#else
      Work& wk = work[0];
#endif
#pragma omp for schedule(static)
      for (int64_t c = 0; c < k_; ++c) input_transform(c, s0, s1, tpad, v, wk);
#pragma omp for schedule(dynamic, 1)
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t r0 = blk * rows_, r1 = std::min(m_, r0 + rows_);
        gemm_rows(r0, r1, s0, s1, tpad, v, wk);
      }
    }
  }

  // V[xi](c, t) for source channel c and every tile of the block, written into packed-B layout.
  void input_transform(int64_t c, size_t s0, size_t s1, int64_t tpad, float* v, Work& wk) const {
    const int64_t sh = wc_.sh, sw = wc_.sw;
    for (size_t s = s0; s < s1; ++s) {
      const Seg& sg = segs_[s];
      const WinoRect& rc = rects_[static_cast<size_t>(sg.rect)];
      const float* plane = rc.src + c * sh * sw;
      const int64_t n = sg.count, width = 2 * n + 2;
      const int64_t iy0 = rc.y0 + 2 * sg.ty - wc_.pt, ix0 = rc.x0 + 2 * sg.tx0 - wc_.pl;
      // The 4 source rows under the segment, zero outside the source rectangle.
      float* rows = wk.rowbuf;
      const int64_t xa = std::clamp(rc.sx0 - ix0, int64_t{0}, width);
      const int64_t xb = std::clamp(rc.sx1 - ix0, xa, width);
      for (int64_t r = 0; r < 4; ++r) {
        float* d = rows + r * width;
        const int64_t iy = iy0 + r;
        if (iy < rc.sy0 || iy >= rc.sy1 || xb <= xa) {
          std::fill(d, d + width, 0.0f);
          continue;
        }
        std::fill(d, d + xa, 0.0f);
        std::memcpy(d + xa, plane + iy * sw + ix0 + xa, static_cast<size_t>(xb - xa) * 4);
        std::fill(d + xb, d + width, 0.0f);
      }
      // h[r][b] = (d B)[r][b] along each row, then V[a][b] = (B^T h)[a][b] down the columns,
      // written straight into packed-B layout: column t0 + t of row c, in runs that stay inside
      // one NR-column panel.
      const float* r0 = rows;
      const float* r1 = rows + width;
      const float* r2 = rows + 2 * width;
      const float* r3 = rows + 3 * width;
      for (int64_t t = 0; t < n;) {
        const int64_t col = sg.t0 + t, len = std::min(n - t, NR - col % NR);
        float* vx = v + sgemm_packed_b_offset(tpad, k_, kc_, c, col);
        fn_.input(r0 + 2 * t, r1 + 2 * t, r2 + 2 * t, r3 + 2 * t, len, vx, v_stride_);
        t += len;
      }
    }
    // Columns past the block's last tile: zero (their results are never read, but keep them
    // finite and deterministic).
    for (int64_t xi = 0; xi < kXi; ++xi)
      for (int64_t col = block_tiles(s1); col < tpad; ++col)
        v[xi * v_stride_ + sgemm_packed_b_offset(tpad, k_, kc_, c, col)] = 0.0f;
  }

  // Destination channels [r0, r1): filter transform, 16 GEMMs, output transform.
  void gemm_rows(int64_t r0, int64_t r1, size_t s0, size_t s1, int64_t tpad, const float* v,
                 Work& wk) const {
    const int64_t rows = r1 - r0, mpad = round_up(rows, MR);
    const int64_t a_stride = xi_stride(sgemm_packed_a_size(mpad, k_));
    float* plain = wk.plain;
    gather_filters(w_, wc_.transposed, r0, rows, mpad, plain);
    // U[xi] in packed-A layout (mpad x k), from the panel-major filters: per panel, blocks of
    // up to 8 consecutive source channels (inside one KC block) are regrouped tap-major, so the
    // transform runs over 48 lanes and writes each xi's 48 values in one contiguous run.
    float* u = wk.u;
    const int64_t pm = mpad / MR;
    alignas(64) float g[9 * kLanes];
    for (int64_t pc = 0; pc < k_; pc += kc_) {
      const int64_t kcb = std::min(kc_, k_ - pc);
      for (int64_t ip = 0; ip < pm; ++ip) {
        float* dst = u + pc * pm * MR + ip * kcb * MR;
        const float* src = plain + (ip * k_ + pc) * 9 * MR;
        for (int64_t p = 0; p < kcb; p += kChanBlock) {
          const int64_t nc = std::min(kChanBlock, kcb - p);
          for (int64_t c = 0; c < nc; ++c)
            for (int tp = 0; tp < 9; ++tp)
              std::memcpy(g + tp * kLanes + c * MR, src + ((p + c) * 9 + tp) * MR, MR * 4);
          fn_.filter(g, nc * MR, dst + p * MR, a_stride);
        }
      }
    }
    // M[xi] = U[xi] * V[xi], mpad x tpad each.
    float* m = wk.m;
    const int64_t m_stride = xi_stride(mpad * tpad);
    for (int64_t xi = 0; xi < kXi; ++xi)
      sgemm_prepacked(mpad, tpad, k_, u + xi * a_stride, v + xi * v_stride_, m + xi * m_stride,
                      tpad, false);
    output_transform(r0, rows, s0, s1, tpad, m, m_stride);
  }

  // Y = A^T M A per tile, into the destination (+ bias, or added to it for the transposed conv).
  void output_transform(int64_t r0, int64_t rows, size_t s0, size_t s1, int64_t tpad,
                        const float* m, int64_t m_size) const {
    float y[2][2 * kMaxBlockTiles];
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t ch = r0 + i;
      const float bias = wc_.bias != nullptr ? wc_.bias[ch] : 0.0f;
      for (size_t s = s0; s < s1; ++s) {
        const Seg& sg = segs_[s];
        const WinoRect& rc = rects_[static_cast<size_t>(sg.rect)];
        const float* mx[kXi];
        for (int64_t xi = 0; xi < kXi; ++xi) mx[xi] = m + xi * m_size + i * tpad + sg.t0;
        const int64_t n = sg.count;
        fn_.output(mx, n, y[0], y[1]);
        float* plane = rc.dst + ch * wc_.dh * wc_.dw;
        const int64_t oy = rc.y0 + 2 * sg.ty, ox = rc.x0 + 2 * sg.tx0;
        const int64_t len = std::min(2 * n, rc.x1 - ox);
        for (int64_t a = 0; a < 2 && oy + a < rc.y1; ++a) {
          float* d = plane + (oy + a) * wc_.dw + ox;
          const float* src = y[a];
          if (wc_.transposed) {
            for (int64_t x = 0; x < len; ++x) d[x] += src[x];
          } else if (rc.relu_dst == nullptr) {
            for (int64_t x = 0; x < len; ++x) d[x] = src[x] + bias;
          } else {
            const int64_t at = ch * wc_.dh * wc_.dw + (oy + a) * wc_.dw + ox;
            float* r = rc.relu_dst + at;
            if (r != d)
              for (int64_t x = 0; x < len; ++x) d[x] = src[x] + bias;
            for (int64_t x = 0; x < len; ++x) {
              const float v = src[x] + bias;
              r[x] = v > 0.f ? v : 0.f;
            }
            if (rc.mask != nullptr) {
              uint8_t* mk = rc.mask + at;
              for (int64_t x = 0; x < len; ++x) mk[x] = src[x] + bias > 0.f;
            }
          }
        }
      }
    }
  }

  WinoConv wc_;
  const PackedA& w_;
  const std::vector<WinoRect>& rects_;
  TransformFns fn_;
  int threads_ = 1;
  int64_t k_ = 0, m_ = 0, kc_ = 0, tmax_ = 0, target_ = 0, rows_ = 0, v_stride_ = 0;
  bool by_blocks_ = false;
  std::vector<Seg> segs_;
  std::vector<size_t> block_start_;  // segs_[block_start_[b] .. block_start_[b + 1]) = block b
};

TransformFns transform_fns() {
  switch (gemm_isa()) {
#if PYDECONV_X86
    case GemmIsa::Avx512: return {wino_filter_avx512, wino_input_avx512, wino_output_avx512};
    case GemmIsa::Avx2: return {wino_filter_avx2, wino_input_avx2, wino_output_avx2};
#endif
    default: return {wino_filter_portable, wino_input_portable, wino_output_portable};
  }
}

}  // namespace

void winograd_conv3x3(const Ctx& ctx, const WinoConv& wc, const PackedA& weights,
                      const std::vector<WinoRect>& rects) {
  Winograd(ctx, wc, weights, rects).run();
}

bool winograd_geometry(const Window2d& g, int64_t groups) {
  return groups == 1 && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1;
}

bool winograd_pays(int64_t m, int64_t k, int64_t pixels, int64_t tiles, double slack) {
  if (!winograd_enabled() || m < 8 || k < 16 || tiles <= 0) return false;
  // In units of one multiply-add per (m, k) pair: the direct GEMM does 9 per pixel; Winograd 16
  // per tile (NR-padded), plus the transforms per tile, plus ~3 filter transforms' worth per
  // block of tiles.
  const double tp = static_cast<double>(round_up(tiles, NR));
  const double md = static_cast<double>(m), kd = static_cast<double>(k);
  const double transforms = tp * (kd * 3.0 + md * 3.0) / (md * kd);
  const double blocks = static_cast<double>(ceil_div(tiles, max_block_tiles(k)));
  const double wino = 16.0 * tp + transforms + 40.0 * blocks;
  return wino < slack * 9.0 * static_cast<double>(pixels);
}

void set_winograd_enabled(bool on) { enabled_flag().store(on); }
bool winograd_enabled() { return enabled_flag().load(); }

}  // namespace pydeconv::kernels
