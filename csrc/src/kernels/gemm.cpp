// pydeconv: the SGEMM driver (BLIS-style): blocking, packing, threading; the micro-kernels come
// from the kernel table (dispatch.hpp).
//
// Threads split C into a grid of rectangles (choose_grid); on its rectangle each thread runs
// the BLIS loop nest with private buffers:
//   jc: columns in NC-wide blocks
//     pc: k in KC-long blocks, in order
//       pack B[pc, jc] into NR-column panels (from a matrix, or by a BPanels source)
//       ic: rows in MC-tall blocks
//         pack A[ic, pc] into MR-row panels (or take them from a PackedA)
//         jr over B panels, ir over A panels -> micro-kernel (MR x NR of C)
// When the tile's rows fit one MC block, each B panel is packed inside the jr loop instead, just
// before its micro-kernels (it is used once per KC block, so it is still in L1 when read).
// Threads split M and N only, never K. Each C element gets one FMA chain per KC block, added to C
// in pc order, and edge tiles run the same micro-kernel on zero-padded panels: the result is
// bit-identical for any thread count and any M/N tiling (only the KC blocking, fixed by k, and the
// micro-kernel's ISA matter). On AVX-512 CPUs full 6-row panels against a full B panel go, up
// to four at a time, to zmm kernels with the same per-element arithmetic, so the AVX-512 and AVX2
// paths are bit-identical too.
#include "kernels/gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "dispatch.hpp"
#include "pydeconv/error.hpp"
#include "pydeconv/tensor.hpp"
#include "relu_run.hpp"
#include "scratch.hpp"
#include "tile_epilogue.hpp"

namespace pydeconv::kernels {

namespace {

constexpr int64_t MR = 6, NR = 16;  // micro-tile: 12 ymm accumulators on AVX2
// KC: an A panel (6 KB) and a B panel (16 KB) stay in a 32-48 KB L1 across the k loop.
// MC: an A block (MC x KC, <= 288 KB) stays in the core's L2 while B panels stream past it.
// NC: a thread's packed B block (KC x NC, <= 4 MB) lives in L2 / L3.
constexpr int64_t KC = 256, MC = 288, NC = 4080;
// Below this many flops a parallel region costs more than it saves.
constexpr double kMinParallelFlops = 4e5;

constexpr int64_t kWidePanels = 4;  // A panels per wide micro-tile at most (24 rows)

}  // namespace

// The baseline-x86-64 micro-kernel, same contract as the AVX2 one; the compiler vectorises the
// j loop with SSE2. The portable table's (dispatch.hpp): CPUs without AVX2/FMA, and when forced.
void sgemm_ukernel_6x16_portable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 bool accumulate, const TileEpilogue& ep) {
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p, a += MR, b += NR) {
    for (int64_t i = 0; i < MR; ++i) {
      const float ai = a[i];
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  }
  for (int64_t i = 0; i < MR; ++i) {
    float* row = c + i * ldc;
    for (int64_t j = 0; j < NR; ++j) {
      if (accumulate) {
        acc[i][j] += row[j];
      } else if (ep.bias != nullptr) {
        acc[i][j] += ep.bias[i];
      }
      row[j] = acc[i][j];
    }
    if (ep.relu != nullptr)
      relu_run(row, ep.relu + i * ldc, ep.mask != nullptr ? ep.mask + i * ldc : nullptr, NR);
  }
}

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// KC blocks of (nearly) equal length, so k = 300 runs as 150 + 150, not 256 + 44. Depends on k
// alone: this is what fixes the summation order.
int64_t kc_for(int64_t k) { return ceil_div(k, ceil_div(k, KC)); }

// Packing scratch reused across calls by the thread that calls sgemm (scratch.hpp).
thread_local Scratch tl_pack_a, tl_pack_b;

// One MR-row panel of op(A): dst[p*MR + i] = op(A)(i0 + i, p0 + p), rows past mr zero.
void pack_a_panel(bool trans_a, const float* a, int64_t lda, int64_t i0, int64_t mr, int64_t p0,
                  int64_t kcb, float* dst) {
  if (trans_a) {  // op(A)(i, p) = a[p*lda + i]: each p reads mr contiguous values
    for (int64_t p = 0; p < kcb; ++p) {
      const float* src = a + (p0 + p) * lda + i0;
      float* d = dst + p * MR;
      for (int64_t i = 0; i < mr; ++i) d[i] = src[i];
      for (int64_t i = mr; i < MR; ++i) d[i] = 0.0f;
    }
  } else {  // op(A)(i, p) = a[i*lda + p]: read each row contiguously, scatter with stride MR
    for (int64_t i = 0; i < mr; ++i) {
      const float* src = a + (i0 + i) * lda + p0;
      for (int64_t p = 0; p < kcb; ++p) dst[p * MR + i] = src[p];
    }
    for (int64_t i = mr; i < MR; ++i) {
      for (int64_t p = 0; p < kcb; ++p) dst[p * MR + i] = 0.0f;
    }
  }
}

// One NR-column panel of op(B): dst[p*NR + j] = op(B)(p0 + p, j0 + j), columns past nr zero.
void pack_b_panel(bool trans_b, const float* b, int64_t ldb, int64_t j0, int64_t nr, int64_t p0,
                  int64_t kcb, float* dst) {
  if (trans_b) {  // op(B)(p, j) = b[j*ldb + p]
    for (int64_t j = 0; j < nr; ++j) {
      const float* src = b + (j0 + j) * ldb + p0;
      for (int64_t p = 0; p < kcb; ++p) dst[p * NR + j] = src[p];
    }
    for (int64_t j = nr; j < NR; ++j) {
      for (int64_t p = 0; p < kcb; ++p) dst[p * NR + j] = 0.0f;
    }
  } else {  // op(B)(p, j) = b[p*ldb + j]: a contiguous copy per p
    for (int64_t p = 0; p < kcb; ++p) {
      const float* src = b + (p0 + p) * ldb + j0;
      float* d = dst + p * NR;
      for (int64_t j = 0; j < nr; ++j) d[j] = src[j];
      for (int64_t j = nr; j < NR; ++j) d[j] = 0.0f;
    }
  }
}

// Part `t` of `parts` of [0, count): contiguous ranges whose sizes differ by at most one.
int64_t part_begin(int64_t count, int64_t t, int64_t parts) { return count * t / parts; }

// Threads form a tm x tn grid over C; each owns one rectangle (a range of MR-row panels x a range
// of NR-column panels) and runs the whole loop nest on it with private packing buffers. No
// barriers and no shared buffers: a thread that the OS deschedules delays only its own tile, which
// matters on small, busy machines (spinning OpenMP barriers turn every stall into a team stall).
// The price is packing twice where the grid cuts: B once per grid row, A once per grid column.
struct Grid {
  int64_t tm = 1, tn = 1;
};

// Chosen to minimise the busiest thread's work: its flops plus its packing, counting one packed
// element as ~16 flops (a load and a store against 80+ GFLOP/s of FMA).
Grid choose_grid(int64_t m, int64_t n, bool a_prepacked, int threads) {
  const int64_t pm = ceil_div(m, MR), pn = ceil_div(n, NR);
  Grid best;
  double best_cost = -1.0;
  for (int64_t tm = 1; tm <= std::min<int64_t>(threads, pm); ++tm) {
    for (int64_t tn = 1; tm * tn <= threads && tn <= pn; ++tn) {
      const double rows = static_cast<double>(ceil_div(pm, tm) * MR);
      const double cols = static_cast<double>(ceil_div(pn, tn) * NR);
      const double cost = 2.0 * rows * cols + 16.0 * (cols + (a_prepacked ? 0.0 : rows));  // per k
      if (best_cost < 0.0 || cost < best_cost * 0.999) best = {tm, tn}, best_cost = cost;
    }
  }
  return best;
}

struct Problem {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;       // raw op(A) source, packed per block, or
  const float* packed = nullptr;  // the PackedA panels (then `a` is unused)
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  const BPanels* panels = nullptr;  // packs op(B) itself (then `b` is unused)
  const float* bpacked = nullptr;   // op(B) already packed (then `b`, `panels` are unused)
  const float* bias = nullptr;      // added to row i of C once, with the first KC block
  ReluEpilogue relu;                // relu.out null: none
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
};

// The ReLU epilogue on the finished C block at rows i.., columns j.. (rows x nr).
void apply_relu(const Problem& pr, int64_t i, int64_t j, int64_t rows, int64_t nr) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t at = (i + r) * pr.ldc + j;
    relu_run(pr.c + at, pr.relu.out + at, pr.relu.mask != nullptr ? pr.relu.mask + at : nullptr,
             nr);
  }
}

class Driver {
 public:
  Driver(const Problem& pr, int threads, const KernelTable& kt)
      : pr_(pr), ukernel_(kt.sgemm_6x16), wide_(kt.sgemm_wide) {
    kc_ = kc_for(pr.k);
    pm_ = ceil_div(pr.m, MR);
    grid_ = threads > 1 ? choose_grid(pr.m, pr.n, pr.packed != nullptr, threads) : Grid{};
    // Widest column range and tallest row block any tile can have, for the buffer sizes.
    const int64_t cols = ceil_div(ceil_div(pr.n, NR), grid_.tn) * NR;
    nc_ = round_up(ceil_div(cols, ceil_div(cols, NC)), NR);
    const int64_t rows = ceil_div(pm_, grid_.tm) * MR;
    mc_ = round_up(ceil_div(rows, ceil_div(rows, MC)), MR);
    // Allocation happens here, before any parallel region, so nothing inside one can throw.
    b_stride_ = kc_ * nc_;
    if (pr.bpacked == nullptr) bpack_ = tl_pack_b.get(b_stride_ * tiles());
    if (pr.packed == nullptr) {
      a_stride_ = kc_ * mc_;
      apack_ = tl_pack_a.get(a_stride_ * tiles());
    }
  }

  int tiles() const { return static_cast<int>(grid_.tm * grid_.tn); }

  // The loop nest over tile `t` of the grid (rows i0..i1, columns j0..j1 of C).
  void run_tile(int t) {
    const Problem& pr = pr_;
    const int64_t gi = t / grid_.tn, gj = t % grid_.tn, pn = ceil_div(pr.n, NR);
    const int64_t i0 = part_begin(pm_, gi, grid_.tm) * MR;
    const int64_t i1 = std::min(pr.m, part_begin(pm_, gi + 1, grid_.tm) * MR);
    const int64_t j0 = part_begin(pn, gj, grid_.tn) * NR;
    const int64_t j1 = std::min(pr.n, part_begin(pn, gj + 1, grid_.tn) * NR);
    float* bbuf = bpack_ != nullptr ? bpack_ + t * b_stride_ : nullptr;
    float* abuf = apack_ + t * a_stride_;
    // With a single row block every B panel is used once per KC block: pack each just before
    // its micro-kernels run, so it is still in L1 (and the packing reads overlap the FMAs).
    const bool pack_late = i1 - i0 <= mc_ && pr.bpacked == nullptr;
    for (int64_t jc = j0; jc < j1; jc += nc_) {
      const int64_t ncb = std::min(nc_, j1 - jc);
      for (int64_t pc = 0; pc < pr.k; pc += kc_) {
        const int64_t kcb = std::min(kc_, pr.k - pc);
        if (pr.bpacked != nullptr) {
          // Pre-packed B: its KC block pc holds ceil(n / NR) panels of kcb x NR.
          bbuf =
              const_cast<float*>(pr.bpacked) + pc * ceil_div(pr.n, NR) * NR + (jc / NR) * kcb * NR;
        }
        for (int64_t jp = 0; !pack_late && pr.bpacked == nullptr && jp * NR < ncb; ++jp)
          pack_b(jc + jp * NR, pc, kcb, bbuf + jp * kcb * NR);
        for (int64_t ic = i0; ic < i1; ic += mc_) {
          const int64_t mcb = std::min(mc_, i1 - ic);
          const float* ablock;
          if (pr.packed != nullptr) {
            // PackedA layout: KC blocks one after another, each pm_ panels of kcb x MR.
            ablock = pr.packed + pc * pm_ * MR + (ic / MR) * kcb * MR;
          } else {
            for (int64_t ip = 0; ip * MR < mcb; ++ip) {
              const int64_t i = ic + ip * MR;
              pack_a_panel(pr.trans_a, pr.a, pr.lda, i, std::min(MR, pr.m - i), pc, kcb,
                           abuf + ip * kcb * MR);
            }
            ablock = abuf;
          }
          macro_kernel(ablock, bbuf, pack_late, ic, mcb, jc, ncb, pc, kcb);
        }
      }
    }
  }

 private:
  // The NR-column panel of op(B) at column j, rows pc..pc+kcb.
  void pack_b(int64_t j, int64_t pc, int64_t kcb, float* dst) const {
    const int64_t nr = std::min(NR, pr_.n - j);
    if (pr_.panels != nullptr) {
      pr_.panels->pack(j, nr, pc, kcb, dst);
    } else {
      pack_b_panel(pr_.trans_b, pr_.b, pr_.ldb, j, nr, pc, kcb, dst);
    }
  }

  // C[ic.., jc..] (+)= Ablock * Bblock, one micro-kernel per MR x NR tile; B panel outer so it
  // stays in L1 while the A block streams from L2. With `pack_late` each B panel is packed here,
  // into the first panel slot of `bblock`. The first KC block (pc = 0) overwrites C unless the
  // caller accumulates, and adds the bias: C starts from the bias and the micro-kernel adds to it.
  void macro_kernel(const float* ablock, float* bblock, bool pack_late, int64_t ic, int64_t mcb,
                    int64_t jc, int64_t ncb, int64_t pc, int64_t kcb) {
    const Problem& pr = pr_;
    const bool bias = pr.bias != nullptr && pc == 0;
    const bool acc = pr.accumulate || pc > 0 || bias;
    const bool last = pr.relu.out != nullptr && pc + kcb == pr.k;  // C tiles final: the epilogue
    // Full tiles take the bias and the ReLU inside the micro-kernel (TileEpilogue); edge tiles
    // and a bias added onto an accumulated C are done here, with the same arithmetic.
    const bool fuse_bias = bias && !pr.accumulate;
    const TileEpilogue none;
    auto epilogue = [&](int64_t i, int64_t j) {
      TileEpilogue ep;
      if (fuse_bias) ep.bias = pr.bias + i;
      if (last) {
        ep.relu = pr.relu.out + i * pr.ldc + j;
        if (pr.relu.mask != nullptr) ep.mask = pr.relu.mask + i * pr.ldc + j;
      }
      return ep;
    };
    for (int64_t jp = 0; jp * NR < ncb; ++jp) {
      const int64_t j = jc + jp * NR, nr = std::min(NR, pr.n - j);
      float* bpanel = bblock + (pack_late ? 0 : jp * kcb * NR);
      if (pack_late) pack_b(j, pc, kcb, bpanel);
      int64_t ip = 0;
      // Up to four full A panels: one zmm tile (mcb <= m - ic, so the rows are real); a partial
      // last A panel is left to the 6x16 kernel below. A partial B panel (the last columns of a
      // 13x13 or 14x14 map) runs the same zmm kernel into a scratch tile, as the 6x16 edge path
      // does, instead of falling to the ymm kernel: same arithmetic, twice the width.
      while (wide_ != nullptr && ip < mcb / MR) {
        const int64_t panels = std::min(kWidePanels, mcb / MR - ip), i = ic + ip * MR;
        if (nr == NR) {
          float* ctile = pr.c + i * pr.ldc + j;
          if (bias && !fuse_bias) add_bias(ctile, i, panels * MR, nr);
          wide_(panels, kcb, ablock + ip * kcb * MR, kcb * MR, bpanel, ctile, pr.ldc,
                acc && !fuse_bias, epilogue(i, j));
        } else {
          alignas(64) float tmp[kWidePanels * MR * NR];
          wide_(panels, kcb, ablock + ip * kcb * MR, kcb * MR, bpanel, tmp, NR, false, none);
          finish_edge(tmp, i, j, panels * MR, nr, bias, acc, last);
        }
        ip += panels;
      }
      for (; ip * MR < mcb; ++ip) {
        const int64_t i = ic + ip * MR, mr = std::min(MR, pr.m - i);
        const float* apanel = ablock + ip * kcb * MR;
        if (mr == MR && nr == NR) {
          float* ctile = pr.c + i * pr.ldc + j;
          if (bias && !fuse_bias) add_bias(ctile, i, mr, nr);
          ukernel_(kcb, apanel, bpanel, ctile, pr.ldc, acc && !fuse_bias, epilogue(i, j));
        } else {
          // Edge tile: the full tile into a scratch, then the valid part; same arithmetic.
          alignas(64) float tmp[MR * NR];
          ukernel_(kcb, apanel, bpanel, tmp, NR, false, none);
          finish_edge(tmp, i, j, mr, nr, bias, acc, last);
        }
      }
    }
  }

  // An edge tile (rows x nr valid at C rows i.., columns j..) computed in full into `tmp`
  // (NR-wide rows): C starts from the bias on the first KC block, the valid part goes into or
  // onto (acc) C, and the ReLU epilogue follows once C is final (`last`).
  void finish_edge(const float* tmp, int64_t i, int64_t j, int64_t rows, int64_t nr, bool bias,
                   bool acc, bool last) const {
    float* ctile = pr_.c + i * pr_.ldc + j;
    if (bias) add_bias(ctile, i, rows, nr);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = ctile + r * pr_.ldc;
      for (int64_t q = 0; q < nr; ++q) row[q] = acc ? row[q] + tmp[r * NR + q] : tmp[r * NR + q];
    }
    if (last) apply_relu(pr_, i, j, rows, nr);
  }

  // Starts rows i.. of the C tile at `ctile` (rows x nr) from the bias, before the first KC block.
  void add_bias(float* ctile, int64_t i, int64_t rows, int64_t nr) const {
    for (int64_t r = 0; r < rows; ++r) {
      float* row = ctile + r * pr_.ldc;
      const float v = pr_.bias[i + r];
      for (int64_t q = 0; q < nr; ++q) row[q] = pr_.accumulate ? row[q] + v : v;
    }
  }

  Problem pr_;
  decltype(KernelTable::sgemm_6x16) ukernel_;
  decltype(KernelTable::sgemm_wide) wide_;  // null unless the AVX-512 path is on
  int64_t kc_ = 0, nc_ = 0, mc_ = 0, pm_ = 0;
  Grid grid_;
  float* bpack_ = nullptr;
  float* apack_ = nullptr;
  int64_t a_stride_ = 0, b_stride_ = 0;  // floats between two tiles' packing buffers
};

void check_args(int64_t m, int64_t n, int64_t k, int64_t lda_min, int64_t lda, int64_t ldb_min,
                int64_t ldb, int64_t ldc) {
  if (m < 0 || n < 0 || k < 0)
    fail(ErrorKind::Value, "sgemm: negative size m=" + std::to_string(m) +
                               " n=" + std::to_string(n) + " k=" + std::to_string(k));
  if (lda < lda_min || ldb < ldb_min || ldc < n)
    fail(ErrorKind::Value, "sgemm: a leading dimension is smaller than its row");
}

void run_problem(const Problem& pr, int threads) {
  if (pr.m == 0 || pr.n == 0) return;
  if (pr.k == 0) {  // empty sum
    if (!pr.accumulate) {
      for (int64_t i = 0; i < pr.m; ++i)
        std::fill(pr.c + i * pr.ldc, pr.c + i * pr.ldc + pr.n, 0.0f);
    }
    return;
  }
#ifdef _OPENMP
  const double flops =
      2.0 * static_cast<double>(pr.m) * static_cast<double>(pr.n) * static_cast<double>(pr.k);
  if (flops < kMinParallelFlops) threads = 1;
#else
  threads = 1;
#endif
  threads = std::max(threads, 1);
  Driver driver(pr, threads, kernel_table());
  const int tiles = driver.tiles();
  if (tiles == 1) {
    driver.run_tile(0);
    return;
  }
#ifdef _OPENMP
  // Nothing in run_tile() allocates or throws (pure loops over preallocated buffers). A team
  // smaller than asked for still covers every tile.
#pragma omp parallel num_threads(tiles)
  {
    for (int t = omp_get_thread_num(); t < tiles; t += omp_get_num_threads()) driver.run_tile(t);
  }
#endif
}

}  // namespace

const char* sgemm_isa() { return kernel_table().sgemm_name; }

int64_t sgemm_kc(int64_t k) { return k > 0 ? kc_for(k) : 1; }

void sgemm_prepacked(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
                     int64_t ldc, bool accumulate) {
  check_args(m, n, k, 0, 0, 0, 0, ldc);
  Problem pr;
  pr.m = m, pr.n = n, pr.k = k;
  pr.packed = a, pr.bpacked = b, pr.c = c, pr.ldc = ldc;
  pr.accumulate = accumulate;
  run_problem(pr, 1);
}

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate, int threads) {
  check_args(m, n, k, trans_a ? m : k, lda, trans_b ? k : n, ldb, ldc);
  Problem pr;
  pr.trans_a = trans_a, pr.trans_b = trans_b;
  pr.m = m, pr.n = n, pr.k = k;
  pr.a = a, pr.lda = lda, pr.b = b, pr.ldb = ldb, pr.c = c, pr.ldc = ldc;
  pr.accumulate = accumulate;
  run_problem(pr, threads);
}

PackedA pack_a(bool trans_a, int64_t m, int64_t k, const float* a, int64_t lda) {
  check_args(m, 0, k, trans_a ? m : k, lda, 0, 0, 0);
  const int64_t pm = ceil_div(m, MR);
  const int64_t kc = k > 0 ? kc_for(k) : 1;
  // Packed weights live as long as the model: large ones are mapped from the OS so that freeing
  // them (and the plain copies they replace) really returns the memory.
  const std::size_t bytes =
      static_cast<std::size_t>(std::max<int64_t>(pm * MR * k, 1)) * sizeof(float);
  bool mapped = false;
  float* data = static_cast<float*>(aligned_alloc64(bytes, true, &mapped));
  PackedA out;
  out.m_ = m, out.k_ = k;
  out.data_ = std::shared_ptr<const float>(data, [bytes, mapped](const float* p) {
    aligned_free64(const_cast<float*>(p), bytes, mapped);
  });
  // Same layout the driver builds per block: KC blocks in order, each all MR panels of that block.
  for (int64_t pc = 0; pc < k; pc += kc) {
    const int64_t kcb = std::min(kc, k - pc);
    for (int64_t ip = 0; ip < pm; ++ip) {
      const int64_t i0 = ip * MR;
      pack_a_panel(trans_a, a, lda, i0, std::min(MR, m - i0), pc, kcb,
                   data + pc * pm * MR + ip * kcb * MR);
    }
  }
  return out;
}

void unpack_a(const PackedA& a, float* out, int64_t lda) {
  const int64_t m = a.m_, k = a.k_, pm = ceil_div(m, MR);
  if (m == 0 || k == 0) return;
  if (lda < k) fail(ErrorKind::Value, "unpack_a: row stride smaller than k");
  const int64_t kc = kc_for(k);
  const float* data = a.data_.get();
  for (int64_t pc = 0; pc < k; pc += kc) {
    const int64_t kcb = std::min(kc, k - pc);
    for (int64_t ip = 0; ip < pm; ++ip) {
      const float* panel = data + pc * pm * MR + ip * kcb * MR;
      const int64_t i0 = ip * MR, mr = std::min(MR, m - i0);
      for (int64_t i = 0; i < mr; ++i)
        for (int64_t p = 0; p < kcb; ++p) out[(i0 + i) * lda + pc + p] = panel[p * MR + i];
    }
  }
}

void sgemm_packed_panels(const PackedA& a, int64_t n, const BPanels& b, const float* bias, float* c,
                         int64_t ldc, bool accumulate, int threads, const ReluEpilogue* relu) {
  if (a.empty()) fail(ErrorKind::Value, "sgemm_packed_panels: empty PackedA");
  check_args(a.m(), n, a.k(), 0, 0, 0, 0, ldc);
  Problem pr;
  pr.m = a.m(), pr.n = n, pr.k = a.k();
  pr.packed = a.data();
  pr.panels = &b, pr.bias = bias, pr.c = c, pr.ldc = ldc;
  pr.accumulate = accumulate;
  if (relu != nullptr) pr.relu = *relu;
  if (pr.k == 0) {  // C = bias (+ C): the empty sum plus the bias, then the epilogue
    if (pr.m == 0 || n == 0) return;
    for (int64_t i = 0; i < pr.m; ++i)
      for (int64_t j = 0; j < n; ++j)
        c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + (bias != nullptr ? bias[i] : 0.0f);
    if (pr.relu.out != nullptr) apply_relu(pr, 0, 0, pr.m, n);
    return;
  }
  run_problem(pr, threads);
}

void sgemm_packed(const PackedA& a, bool trans_b, int64_t n, const float* b, int64_t ldb, float* c,
                  int64_t ldc, bool accumulate, int threads) {
  if (a.empty()) fail(ErrorKind::Value, "sgemm_packed: empty PackedA");
  check_args(a.m(), n, a.k(), 0, 0, trans_b ? a.k() : n, ldb, ldc);
  Problem pr;
  pr.trans_b = trans_b;
  pr.m = a.m(), pr.n = n, pr.k = a.k();
  pr.packed = a.data();
  pr.b = b, pr.ldb = ldb, pr.c = c, pr.ldc = ldc;
  pr.accumulate = accumulate;
  run_problem(pr, threads);
}

}  // namespace pydeconv::kernels
