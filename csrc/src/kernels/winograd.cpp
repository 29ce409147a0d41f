// Winograd F(2x2, 3x3) and F(4x4, 3x3): see winograd.hpp for the method.
//
// Work is cut into blocks of tiles (whole tile rows where they fit), sized so the transformed
// input of a block (alpha^2 x k_ch x tiles floats) stays within a few MiB. Per block:
//   1. input transform, threads split the source channels: V[xi] in packed-B layout;
//   2. threads take blocks of <= 48 destination channels: U[xi] for those rows (packed-A
//      layout), the alpha^2 GEMMs into M (rows x tiles each), then the output transform of those
//      rows.
// Every output element is computed by the same operations in the same order whatever the thread
// count (threads only choose which rows/channels they do), so results are bit-identical run to
// run and across thread counts.
#include "winograd.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include "dispatch.hpp"
#include "pydeconv/error.hpp"
#include "scratch.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PYDECONV_WINO_FN(name) name##_portable
#include "winograd_kernels.inc"

namespace pydeconv::kernels {

namespace {

constexpr int64_t NR = kSgemmNR, MR = kSgemmMR;
constexpr int64_t kMaxXi = 36;            // transform positions: alpha^2, alpha = tile + 2
constexpr int64_t kVBudget = 1 << 20;     // floats of V per block (4 MiB; up to 1.5x, block_count)
constexpr int64_t kMaxBlockTiles = 1024;  // max_block_tiles at most
constexpr int64_t kSmallKPixels = 512;    // outputs per F(2x2) block for k <= 128 (F(4x4): 2x)
constexpr int64_t kRowsPerBlock = 48;     // destination channels per GEMM block (8 A panels)
// Floats of U computed once per call for all destination channels (4 MiB), when there are
// several blocks of tiles; larger filter banks are transformed per block and row block.
constexpr int64_t kSharedUBudget = 1 << 20;
// Below this many GEMM multiply-adds a call runs on one thread (about 50 us of work).
constexpr double kMinParallelFma = 4e6;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

int64_t alpha_sq(int64_t tile) { return (tile + 2) * (tile + 2); }

// Tiles per block at most for k source channels and tile x tile tiles. With few channels the
// filter transform per block is cheap and the block's V and M should stay in L2 (512 outputs:
// 128 F(2x2) tiles, 0.5-1 MiB each for k <= 128; measured 1.3-1.5x faster on VGG16's
// 64/128-channel layers than 1024 tiles; F(4x4) takes 1024 outputs, 64 tiles: its GEMMs over 32
// tiles, only two NR panels wide, measured slower on small maps); with many, blocks are as large
// as the V budget allows (a multiple of NR), so the transform of the k x m filters is amortised
// over more tiles.
int64_t max_block_tiles(int64_t k, int64_t tile) {
  return k <= 128
             ? (tile == 4 ? 2 : 1) * kSmallKPixels / (tile * tile)
             : std::clamp<int64_t>(kVBudget / (alpha_sq(tile) * k) / NR * NR, NR, kMaxBlockTiles);
}

// Blocks for `tiles` tiles at most `tmax` each, rounded to the nearest count (so a block may
// hold up to 1.5x tmax): one more block would mean one more filter transform where U is not
// shared, which costs more than a somewhat larger V.
int64_t block_count(int64_t tiles, int64_t tmax) {
  return std::max<int64_t>(1, (2 * tiles + tmax) / (2 * tmax));
}

// Buffers reused across calls by the calling thread (scratch.hpp).
thread_local Scratch tl_v, tl_work, tl_u;

// A run of `count` consecutive tiles of one tile row of one rectangle: tile tx covers outputs
// (y, x) with y = rect.y0 + T * ty + {0 .. T-1}, x = rect.x0 + T * (tx0 + tx) + {0 .. T-1} for
// tile size T. `t0` is the block column of its first tile.
struct Seg {
  int64_t rect, ty, tx0, count, t0;
};

// Per-thread work buffers, carved from one allocation made before the parallel regions.
struct Work {
  float* v;       // V: alpha^2 packed B matrices (k x tiles), shared unless threads take blocks
  float* rowbuf;  // alpha zero-padded source rows of (part of) a segment: alpha x (T * seg + 2)
  float* ybuf;    // T output rows of a segment: T x (T * seg)
  float* u;       // alpha^2 packed A matrices (mpad x k)
  float* m;       // alpha^2 GEMM results (mpad x tpad)
};

// Strides between the per-position matrices: padded so the streams a transform writes or reads
// do not all fall on the same L1 sets (sizes that are multiples of 4 KiB otherwise alias).
int64_t xi_stride(int64_t size) { return round_up(size, 16) + 16; }

// Stride between the per-position U matrices of a block of `rows` destination channels (packed
// A, rows padded to MR, x k); a block's U is alpha^2 of them.
int64_t u_stride(int64_t rows, int64_t k) {
  return xi_stride(sgemm_packed_a_size(round_up(rows, MR), k));
}

// Where column p of the layer's packed weights (W as (OC) x (C * 9), the forward GEMM packing)
// lives: row i of it is at data[base[p] + (i / MR) * panel[p] + i % MR] (panel[p]: the floats of
// one row panel in p's KC block). Built once per call, so the filter transform reads the packed
// weights in place.
struct PackedCols {
  std::vector<int64_t> base, panel;
  explicit PackedCols(const PackedA& w) {
    const int64_t k = w.k(), kc = sgemm_kc(k), pm = ceil_div(w.m(), MR);
    base.resize(static_cast<size_t>(k)), panel.resize(static_cast<size_t>(k));
    for (int64_t p = 0; p < k; ++p) {
      const int64_t pc = p / kc * kc, kcb = std::min(kc, k - pc);
      base[static_cast<size_t>(p)] = pc * pm * MR + (p - pc) * MR;
      panel[static_cast<size_t>(p)] = kcb * MR;
    }
  }
};

constexpr int64_t kChanBlock = 8, kLanes = kChanBlock * MR;  // filters per transform call

// The transform loops (winograd_kernels.inc), built for the baseline ISA here and for AVX2 /
// AVX-512 in x86/winograd_*.cpp; one set per call, from the kernel table.
using TransformFns = KernelTable::Winograd;

// Cost of F(tile x tile, 3x3) over `tiles` tiles, in multiply-adds per (m, k) pair: alpha^2 per
// tile (NR-padded); the input and output transforms, per tile and source / destination channel;
// and the filter transform, once per call when all of U fits the shared budget, else once per
// block of tiles. F(2x2)'s weights were fitted to VGG16's layers; F(4x4)'s transforms do about
// 4x the work per tile (and 2.25x per filter, with less regular arithmetic).
struct WinoCost {
  double total = 0.0, filters = 0.0;  // filters: the filter transform's part of the total
};
WinoCost winograd_cost(int64_t m, int64_t k, int64_t tiles, int64_t tile) {
  const double tp = static_cast<double>(round_up(tiles, NR));
  const double md = static_cast<double>(m), kd = static_cast<double>(k);
  const double per_tile = tile == 4 ? 12.0 : 3.0, per_filter = tile == 4 ? 150.0 : 40.0;
  const double transforms = tp * per_tile * (kd + md) / (md * kd);
  const int64_t u = ceil_div(m, kRowsPerBlock) * alpha_sq(tile) * u_stride(kRowsPerBlock, k);
  const double filters =
      per_filter * (u <= kSharedUBudget
                        ? 1.0
                        : static_cast<double>(block_count(tiles, max_block_tiles(k, tile))));
  return {static_cast<double>(alpha_sq(tile)) * tp + transforms + filters, filters};
}

// A forward call keeps its U (WinoCache) when the filter transform is at least this share of its
// cost: ZFNet's conv3-5 under F(4x4) (13x13 maps, 16 tiles: 21%), not VGG16's conv4 (28x28, 49
// tiles: 6%).
constexpr double kCacheShare = 0.15;

class Winograd {
 public:
  Winograd(const Ctx& ctx, const WinoConv& wc, const PackedA& w, const std::vector<WinoRect>& rects)
      : wc_(wc),
        w_(w),
        cols_(w),
        rects_(rects),
        kt_(kernel_table()),
        fn_(wc.tile == 4 ? kt_.wino4 : kt_.wino2) {
    threads_ = std::max(ctx.threads, 1);
    k_ = wc.k_ch, m_ = wc.m_ch;
    tile_ = wc.tile, alpha_ = tile_ + 2, xi_ = alpha_ * alpha_;
    kc_ = sgemm_kc(k_);
    tmax_ = max_block_tiles(k_, tile_);
    // Blocks of (nearly) equal size, a multiple of the thread count when there are several.
    int64_t total = 0;
    for (const WinoRect& rc : rects_)
      if (rc.y1 > rc.y0 && rc.x1 > rc.x0)
        total += ceil_div(rc.y1 - rc.y0, tile_) * ceil_div(rc.x1 - rc.x0, tile_);
    // Small calls (a projection's first layers) run on the calling thread: waking the team
    // costs more than it saves.
    if (static_cast<double>(total) * static_cast<double>(xi_ * k_ * m_) < kMinParallelFma)
      threads_ = 1;
    total_tiles_ = total;
    int64_t nb = block_count(total, tmax_);
    if (nb > 1) nb = round_up(nb, threads_);
    // A whole number of NR-column panels: a block is padded to them anyway, and a target just
    // under a panel boundary left it short of whole tile rows (VGG16's 30x30 maps under F(4x4),
    // 8 tiles a row, batch 8: blocks of 40 tiles in 48 columns, 17% of the GEMMs padding).
    target_ = round_up(std::max(NR, ceil_div(total, nb)), NR);
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
    float* v = tl_v.get(xi_ * v_stride_ * nv);
    const int64_t rowbuf = alpha_ * (tile_ * target_ + 2), ybuf = tile_ * tile_ * target_;
    // U: for all destination channels once, when that fits the budget (then no block redoes
    // the filter transform); otherwise per thread, for its row block of the moment.
    const int64_t u_rows = xi_ * u_stride(rows_, k_);
    const int64_t nrb = ceil_div(m_, rows_);
    const float* cached = cached_filters(nrb, u_rows);
    const bool shared =
        cached == nullptr && nrb * u_rows <= kSharedUBudget && block_start_.size() > 2;
    const int64_t u = shared || cached != nullptr ? 0 : u_rows;
    const int64_t mm = xi_ * xi_stride(mpad * tpad);
    const int64_t per =
        round_up(rowbuf, 16) + round_up(ybuf, 16) + round_up(u, 16) + round_up(mm, 16);
    float* base = tl_work.get(per * threads_);
    std::vector<Work> work(static_cast<size_t>(threads_));
    for (int t = 0; t < threads_; ++t) {
      float* p = base + per * t;
      Work& wk = work[static_cast<size_t>(t)];
      wk.v = v + (by_blocks_ ? xi_ * v_stride_ * t : 0);
      wk.rowbuf = p, p += round_up(rowbuf, 16);
      wk.ybuf = p, p += round_up(ybuf, 16);
      wk.u = p, p += round_up(u, 16);
      wk.m = p;
    }
    shared_u_ = cached;
    if (shared) {
      float* all = tl_u.get(nrb * u_rows);
      all_filters(nrb, u_rows, all);
      shared_u_ = all;
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
        const size_t s0 = block_start_[static_cast<size_t>(b)],
                     s1 = block_start_[static_cast<size_t>(b) + 1];
        const int64_t bt = round_up(block_tiles(s1), NR);
        for (int64_t c = 0; c < k_; ++c) input_transform(c, s0, s1, bt, wk.v, wk);
        for (int64_t r0 = 0; r0 < m_; r0 += rows_)
          gemm_rows(r0, std::min(m_, r0 + rows_), s0, s1, bt, wk.v, wk);
      }
      return;
    }
    for (int64_t b = 0; b < nblocks; ++b) {
      const size_t s0 = block_start_[static_cast<size_t>(b)],
                   s1 = block_start_[static_cast<size_t>(b) + 1];
      run_block(s0, s1, round_up(block_tiles(s1), NR), work);
    }
  }

 private:
  // U of all nrb row blocks into u, row block rb at rb * u_rows (run()'s shared layout), the
  // blocks spread over the threads.
  void all_filters(int64_t nrb, int64_t u_rows, float* u) const {
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1) if (threads_ > 1)
    for (int64_t rb = 0; rb < nrb; ++rb)
      filter_transform(rb * rows_, std::min(m_, rb * rows_ + rows_), u + rb * u_rows);
  }

  // U of every row block (run()'s shared layout: row block rb at rb * u_rows) from the layer's
  // WinoCache, filled here by the first forward call that qualifies (kCacheShare) while the net's
  // budget has room; null when this call transforms its filters itself.
  const float* cached_filters(int64_t nrb, int64_t u_rows) {
    WinoCache* c = wc_.cache;
    if (c == nullptr || wc_.transposed) return nullptr;
    const int isa = static_cast<int>(kt_.isa);
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->u != nullptr)
      return c->tile == tile_ && c->rows == rows_ && c->isa == isa ? c->u.get() : nullptr;
    if (c->settled || c->budget == nullptr) return nullptr;
    const WinoCost cost = winograd_cost(m_, k_, total_tiles_, tile_);
    if (cost.filters < kCacheShare * cost.total) return nullptr;  // a later call may qualify
    const int64_t floats = nrb * u_rows, bytes = floats * int64_t(sizeof(float));
    int64_t left = c->budget->load();
    do {
      if (left < bytes) {
        c->settled = true;
        return nullptr;
      }
    } while (!c->budget->compare_exchange_weak(left, left - bytes));
    Tensor all;
    try {
      all = Tensor(Shape::vec(floats));
    } catch (...) {
      c->budget->fetch_add(bytes);  // nothing kept: the bytes go back
      throw;
    }
    all_filters(nrb, u_rows, all.data());
    c->u = all.storage();
    c->tile = static_cast<int>(tile_), c->rows = rows_, c->isa = isa, c->bytes = bytes;
    c->settled = true;
    return c->u.get();
  }

  // Tile rows of every rectangle, cut into segments of at most target_ tiles, grouped into blocks
  // of at most target_ tiles.
  void segments() {
    int64_t t = 0;
    block_start_.push_back(0);
    for (size_t r = 0; r < rects_.size(); ++r) {
      const WinoRect& rc = rects_[r];
      if (rc.y1 <= rc.y0 || rc.x1 <= rc.x0) continue;
      const int64_t th = ceil_div(rc.y1 - rc.y0, tile_), tw = ceil_div(rc.x1 - rc.x0, tile_);
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
      const int64_t n = sg.count;
      const int64_t iy0 = rc.y0 + tile_ * sg.ty - wc_.pt, ix0 = rc.x0 + tile_ * sg.tx0 - wc_.pl;
      // Tiles [ta, tb) read only source pixels inside the rectangle: straight from the plane.
      // The others (at the rectangle's edges) read zero-padded copies of their rows.
      int64_t ta = n, tb = n;
      if (iy0 >= rc.sy0 && iy0 + alpha_ <= rc.sy1) {
        ta = std::min(n, std::max<int64_t>(0, ceil_div(rc.sx0 - ix0, tile_)));
        const int64_t last = rc.sx1 - ix0 - alpha_;  // tile t fits while tile * t <= last
        tb = last < 0 ? ta : std::clamp(last / tile_ + 1, ta, n);
      }
      const float* rp[6];
      if (ta < tb) {
        for (int64_t r = 0; r < alpha_; ++r) rp[r] = plane + (iy0 + r) * sw + ix0 + tile_ * ta;
        emit_input(rp, tb - ta, sg.t0 + ta, c, tpad, v);
      }
      if (ta > 0) padded_input(plane, iy0, ix0, 0, ta, sg.t0, c, tpad, rc, v, wk);
      if (tb < n) padded_input(plane, iy0, ix0, tb, n, sg.t0, c, tpad, rc, v, wk);
    }
    // Columns past the block's last tile: zero (their results are never read, but keep them
    // finite and deterministic). tpad rounds the block up to whole NR-column panels, so they are
    // one run of the last panel's row c.
    const int64_t bt = block_tiles(s1);
    if (bt < tpad)
      for (int64_t xi = 0; xi < xi_; ++xi) {
        float* z = v + xi * v_stride_ + sgemm_packed_b_offset(tpad, k_, kc_, c, bt);
        for (int64_t j = 0; j < tpad - bt; ++j) z[j] = 0.0f;
      }
  }

  // The input transform of `count` consecutive tiles at block columns col0.., with rp[r]
  // pointing at source row r under the first: V[a][b] = (B^T d B), written straight into
  // packed-B layout (column col0 + t of row c) in runs that stay inside one NR-column panel.
  void emit_input(const float* const* rp, int64_t count, int64_t col0, int64_t c, int64_t tpad,
                  float* v) const {
    for (int64_t t = 0; t < count;) {
      const int64_t col = col0 + t, len = std::min(count - t, NR - col % NR);
      const float* at[6];
      for (int64_t r = 0; r < alpha_; ++r) at[r] = rp[r] + tile_ * t;
      fn_.input(at, len, v + sgemm_packed_b_offset(tpad, k_, kc_, c, col), v_stride_);
      t += len;
    }
  }

  // emit_input for tiles [t0, t1) from copies of their source rows, zero outside the source
  // rectangle.
  void padded_input(const float* plane, int64_t iy0, int64_t ix0, int64_t t0, int64_t t1,
                    int64_t col0, int64_t c, int64_t tpad, const WinoRect& rc, float* v,
                    Work& wk) const {
    const int64_t width = tile_ * (t1 - t0) + 2, x0 = ix0 + tile_ * t0;
    const int64_t xa = std::clamp(rc.sx0 - x0, int64_t{0}, width);
    const int64_t xb = std::clamp(rc.sx1 - x0, xa, width);
    const float* rp[6];
    for (int64_t r = 0; r < alpha_; ++r) {
      float* d = wk.rowbuf + r * width;
      rp[r] = d;
      const int64_t iy = iy0 + r;
      if (iy < rc.sy0 || iy >= rc.sy1 || xb <= xa) {
        std::fill(d, d + width, 0.0f);
        continue;
      }
      std::fill(d, d + xa, 0.0f);
      std::memcpy(d + xa, plane + iy * wc_.sw + x0 + xa, static_cast<size_t>(xb - xa) * 4);
      std::fill(d + xb, d + width, 0.0f);
    }
    emit_input(rp, t1 - t0, col0 + t0, c, tpad, v);
  }

  // Destination channels [r0, r1): filter transform, alpha^2 GEMMs, output transform.
  void gemm_rows(int64_t r0, int64_t r1, size_t s0, size_t s1, int64_t tpad, const float* v,
                 Work& wk) const {
    const int64_t rows = r1 - r0, mpad = round_up(rows, MR);
    const int64_t a_stride = u_stride(rows, k_);
    const float* u = shared_u_;
    if (u != nullptr) {
      u += r0 / rows_ * xi_ * u_stride(rows_, k_);  // run()'s layout: row block r0 / rows_
    } else {
      filter_transform(r0, r1, wk.u);
      u = wk.u;
    }
    // M[xi] = U[xi] * V[xi], mpad x tpad each.
    float* m = wk.m;
    const int64_t m_stride = xi_stride(mpad * tpad);
    for (int64_t xi = 0; xi < xi_; ++xi)
      sgemm_prepacked(mpad, tpad, k_, u + xi * a_stride, v + xi * v_stride_, m + xi * m_stride,
                      tpad, false);
    output_transform(r0, rows, s0, s1, tpad, m, m_stride, wk.ybuf);
  }

  // U for destination channels [r0, r1) into u: alpha^2 packed A matrices (mpad x k) at
  // u_stride(r1 - r0, k) apart.
  void filter_transform(int64_t r0, int64_t r1, float* u) const {
    const int64_t rows = r1 - r0, mpad = round_up(rows, MR);
    const int64_t a_stride = u_stride(rows, k_);
    // U[xi] in packed-A layout (mpad x k). Per panel of 6 destination rows, blocks of up to 8
    // consecutive source channels (inside one KC block) are gathered tap-major straight from the
    // packed weights, so the transform runs over 48 lanes and writes each xi's 48 values in one
    // contiguous run. Forward: row i is output channel r0 + i, its 6-row panel copied as packed
    // (rows past m are zero there). Transposed: row i is input channel r0 + i, source channel ch
    // an output channel, and the tap flipped: W[ch][r0 + i][8 - tap]; rows past `rows` zero.
    const int64_t pm = mpad / MR;
    const float* data = w_.data();
    const int64_t* base = cols_.base.data();
    const int64_t* panel = cols_.panel.data();
    alignas(64) float g[9 * kLanes];
    alignas(64) int32_t idx[kLanes];
    // Transposed: lane (c, l) reads tap t at data[idx + (8 - t) * MR], gathered by fn_.gather
    // (AVX-512: 16 lanes per instruction). A row whose taps are not at that fixed step (a KC
    // boundary of the packing cuts them: one input channel per boundary), or whose offsets would
    // not fit 32 bits, gathers zeros and is filled one tap at a time after.
    const bool fits32 = round_up(w_.m(), MR) * w_.k() <= std::numeric_limits<int32_t>::max();
    int64_t row_base[MR], row_panel[MR];
    bool cut[MR];
    for (int64_t pc = 0; pc < k_; pc += kc_) {
      const int64_t kcb = std::min(kc_, k_ - pc);
      for (int64_t ip = 0; ip < pm; ++ip) {
        float* dst = u + pc * pm * MR + ip * kcb * MR;
        for (int64_t l = 0; l < MR && wc_.transposed; ++l) {
          const int64_t i = ip * MR + l, c0 = (r0 + i) * 9;
          cut[l] = i < rows && (!fits32 || base[c0 + 8] - base[c0] != 8 * MR);
          row_base[l] = i < rows && !cut[l] ? base[c0] : -1;
          row_panel[l] = i < rows ? panel[c0] : 0;
        }
        for (int64_t p = 0; p < kcb; p += kChanBlock) {
          const int64_t nc = std::min(kChanBlock, kcb - p);
          if (wc_.transposed) {
            for (int64_t c = 0; c < kChanBlock; ++c) {
              const int64_t ch = pc + p + c;
              for (int64_t l = 0; l < MR; ++l) {
                const int64_t at = row_base[l] + ch / MR * row_panel[l] + ch % MR;
                idx[c * MR + l] = c < nc && row_base[l] >= 0 ? static_cast<int32_t>(at) : -1;
              }
            }
            fn_.gather(data, idx, g);
            for (int64_t l = 0; l < MR; ++l) {
              if (!cut[l]) continue;
              const int64_t c0 = (r0 + ip * MR + l) * 9;
              for (int64_t c = 0; c < nc; ++c) {
                const int64_t ch = pc + p + c;
                for (int64_t tp = 0; tp < 9; ++tp) {
                  const int64_t col = c0 + 8 - tp;
                  g[tp * kLanes + c * MR + l] = data[base[col] + ch / MR * panel[col] + ch % MR];
                }
              }
            }
          } else {
            const int64_t gp = r0 / MR + ip;
            for (int64_t c = 0; c < nc; ++c) {
              const int64_t ch = pc + p + c;
              for (int64_t tp = 0; tp < 9; ++tp) {
                const int64_t col = ch * 9 + tp;
                std::memcpy(g + c * MR + tp * kLanes, data + base[col] + gp * panel[col], MR * 4);
              }
            }
          }
          fn_.filter(g, nc * MR, dst + p * MR, a_stride);
        }
      }
    }
  }

  // Y = A^T M A per tile, into the destination (+ bias, or added to it for the transposed conv
  // unless it overwrites).
  void output_transform(int64_t r0, int64_t rows, size_t s0, size_t s1, int64_t tpad,
                        const float* m, int64_t m_size, float* ybuf) const {
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t ch = r0 + i;
      const float bias = wc_.bias != nullptr ? wc_.bias[ch] : 0.0f;
      for (size_t s = s0; s < s1; ++s) {
        const Seg& sg = segs_[s];
        const WinoRect& rc = rects_[static_cast<size_t>(sg.rect)];
        const float* mx[kMaxXi];
        for (int64_t xi = 0; xi < xi_; ++xi) mx[xi] = m + xi * m_size + i * tpad + sg.t0;
        const int64_t n = sg.count;
        float* y[4];
        for (int64_t a = 0; a < tile_; ++a) y[a] = ybuf + a * tile_ * n;
        fn_.output(mx, n, y);
        float* plane = rc.dst + ch * wc_.dh * wc_.dw;
        const int64_t oy = rc.y0 + tile_ * sg.ty, ox = rc.x0 + tile_ * sg.tx0;
        const int64_t len = std::min(tile_ * n, rc.x1 - ox);
        for (int64_t a = 0; a < tile_ && oy + a < rc.y1; ++a) {
          float* d = plane + (oy + a) * wc_.dw + ox;
          const float* src = y[a];
          if (wc_.transposed && wc_.overwrite) {
            for (int64_t x = 0; x < len; ++x) d[x] = src[x];
          } else if (wc_.transposed) {
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
  PackedCols cols_;
  const std::vector<WinoRect>& rects_;
  const KernelTable& kt_;
  TransformFns fn_;
  int threads_ = 1;
  int64_t tile_ = 2, alpha_ = 4, xi_ = 16;
  int64_t k_ = 0, m_ = 0, kc_ = 0, tmax_ = 0, target_ = 0, rows_ = 0, v_stride_ = 0;
  int64_t total_tiles_ = 0;
  bool by_blocks_ = false;
  const float* shared_u_ = nullptr;  // U of every row block, computed once per call or cached
  std::vector<Seg> segs_;
  std::vector<size_t> block_start_;  // segs_[block_start_[b] .. block_start_[b + 1]) = block b
};

}  // namespace

void winograd_conv3x3(const Ctx& ctx, const WinoConv& wc, const PackedA& weights,
                      const std::vector<WinoRect>& rects) {
  Winograd(ctx, wc, weights, rects).run();
}

void conv2d_share_wino_budget(ConvPacked& p, std::shared_ptr<std::atomic<int64_t>> budget_bytes) {
  if (budget_bytes == nullptr) {
    p.wino = nullptr;
    return;
  }
  p.wino = std::make_shared<WinoCache>();
  p.wino->budget = std::move(budget_bytes);
}

int64_t conv2d_wino_cached_bytes(const ConvPacked& p) {
  if (p.wino == nullptr) return 0;
  std::lock_guard<std::mutex> lock(p.wino->mu);
  return p.wino->u != nullptr ? p.wino->bytes : 0;
}

bool winograd_geometry(const Window2d& g, int64_t groups) {
  return groups == 1 && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1;
}

int winograd_tile(int64_t m, int64_t k, const WinoCount& n, double slack, bool four,
                  double four_ratio) {
  const int mode = winograd_mode();
  if (mode == 0 || m < 8 || k < 16 || n.tiles2 <= 0) return 0;
  if (mode != 1) return mode;  // forced
  const double c2 = winograd_cost(m, k, n.tiles2, 2).total;
  const double c4 = winograd_cost(m, k, n.tiles4, 4).total;
  // F(4x4) only where it clearly pays (it also rounds more).
  const int tile = four && c4 < four_ratio * c2 ? 4 : 2;
  return std::min(c2, c4) < slack * 9.0 * static_cast<double>(n.pixels) ? tile : 0;
}

}  // namespace pydeconv::kernels
