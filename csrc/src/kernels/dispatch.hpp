// pydeconv: the one kernel dispatch point. Every kernel that has code per instruction set (the
// x86/ files, each built with its ISA's flags) is reached through a KernelTable: one constant
// table per ISA, filled in dispatch.cpp from the portable kernels and the x86/ ones, and the
// active table picked by the ISA setting (settings.hpp: set_isa, PYDECONV_ISA; by default the
// best ISA the CPU and OS run, asked once with cpuid). An op fetches the table once per call,
// outside its parallel regions, and keeps the entries it needs in locals: never a lookup per
// element or per tile, and nothing but these tables ever names an ISA-specific kernel.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu.hpp"
#include "direct_conv.hpp"
#include "tile_epilogue.hpp"

namespace pydeconv::kernels {

enum class Isa { Portable, Avx2, Avx512 };

// The depthwise convolution's forward over one plane (depthwise_fwd.inc): in (h x w), the plane's
// K*K weights and bias, the window, the output size; out, and its ReLU (and mask) when not null;
// buf: the thread's scratch.
using DepthwisePlane = void (*)(const float* in, int64_t h, int64_t w, const float* wt, float bias,
                                const Window2d& g, int64_t oh, int64_t ow, float* out, float* relu,
                                uint8_t* mask, std::vector<float>& buf);

// The kernels of one ISA. Every entry is set in every table except sgemm_wide (AVX-512 only).
struct KernelTable {
  Isa isa;
  const char* name;  // "portable", "avx2", "avx512" (set_isa's names)

  // SGEMM (gemm.cpp). The MR x NR (6x16) micro-kernel: C (+)= A panel * B panel over kc, with the
  // tile's epilogue; on AVX-512 also the wide one, `panels` (1..4) consecutive A panels (a,
  // a + a_stride, ...) times one B panel, a (6 * panels) x 16 tile of C. The AVX-512 table's
  // 6x16 kernel is AVX2's (partial panels), with the same per-element arithmetic.
  void (*sgemm_6x16)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                     bool accumulate, const TileEpilogue& ep);
  void (*sgemm_wide)(int64_t panels, int64_t kc, const float* a, int64_t a_stride, const float* b,
                     float* c, int64_t ldc, bool accumulate, const TileEpilogue& ep);
  const char* sgemm_name;  // what sgemm_isa() reports

  // linear's matrix-vector path (linear.cpp): out[r] = <x, row r of w (row stride k)>, r < rows.
  void (*gemv_rows)(const float* x, const float* w, int64_t k, int64_t rows, float* out);

  // The direct convolution's micro-tile and its shape (direct_conv.hpp).
  void (*direct_tile)(const DirectTile& t);
  const DirectShape* direct_shape;

  // Max pooling's interior row fold (pool_fold.inc): kind 0 = 2x2/2, 1 = 3x3/2, 2 = 3x3/1,
  // 3 = 5x5/1, 4 = 2x2/1.
  void (*pool_fold)(int kind, const float* s, int64_t n, int32_t idx, bool first, float* best,
                    int32_t* arg);

  // Winograd's transform loops (winograd_kernels.inc) for F(2x2, 3x3) and F(4x4, 3x3).
  struct Winograd {
    void (*filter)(const float*, int64_t, float*, int64_t);
    void (*input)(const float* const*, int64_t, float*, int64_t);
    void (*output)(const float* const*, int64_t, float* const*);
    void (*gather)(const float*, const int32_t*, float*);  // the transposed conv's filters
  } wino2, wino4;

  // LRN's d^-0.75 over m values (lrn.cpp): r[i] = 1 / sqrt(v sqrt(v)), v = float(d[i]) or d[i].
  void (*lrn_pow075_float)(const double* d, int64_t m, float* r);
  void (*lrn_pow075_double)(const double* d, int64_t m, double* r);

  // The exp-based activations' forward over n floats (act_rows.inc, activation.cpp): kind 0
  // sigmoid, 1 silu. y may not alias x.
  void (*act_exp_rows)(int kind, const float* x, int64_t n, float* y);
  // The depthwise forward's plane kernel for a geometry depthwise_fits takes (depthwise.cpp).
  DepthwisePlane (*depthwise_plane_for)(const Window2d& g);
};

// The table of the ISA setting (settings.hpp). Throws Value only when PYDECONV_ISA names an ISA
// that is unknown or that this CPU cannot run.
const KernelTable& kernel_table();
// The table of `isa` (tests); it must be one this CPU runs (cpu_runs).
const KernelTable& kernel_table(Isa isa);

// Whether this CPU (and OS) can run `isa`'s kernels; the best ISA it runs.
bool cpu_runs(Isa isa);
Isa best_isa();

// The ISA setting (settings.cpp: set_isa, PYDECONV_ISA), always one this CPU runs.
Isa active_isa();

// The portable kernels the tables name (the x86/ ones are declared in dispatch.cpp only).
void sgemm_ukernel_6x16_portable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 bool accumulate, const TileEpilogue& ep);
void gemv_rows_portable(const float* x, const float* w, int64_t k, int64_t rows, float* out);
void lrn_inv_pow075_portable(const double* d, int64_t m, float* r);
void lrn_inv_pow075_portable(const double* d, int64_t m, double* r);
void act_exp_rows_portable(int kind, const float* x, int64_t n, float* y);
DepthwisePlane depthwise_plane_for_portable(const Window2d& g);

}  // namespace pydeconv::kernels
