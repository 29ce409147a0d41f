// pydeconv: the kernel tables, one per instruction set (see dispatch.hpp), and the choice of one.
#include "dispatch.hpp"

#include "pydeconv/error.hpp"

namespace pydeconv::kernels {

// The kernels of each ISA, declared here only: nothing else names them. The portable ones are in
// the op files (and dispatch.hpp); the x86/ ones are the same loops or intrinsics built with
// their ISA's flags (see CMakeLists.txt) and may run only on a CPU that has it.
void pool_fold_portable(int, const float*, int64_t, int32_t, bool, float*, int32_t*);
#define PYDECONV_WINO_DECLARE(f, isa)                                                      \
  void f##_filter_##isa(const float* __restrict__, int64_t, float* __restrict__, int64_t); \
  void f##_input_##isa(const float* const*, int64_t, float* __restrict__, int64_t);        \
  void f##_output_##isa(const float* const*, int64_t, float* const*);
#define PYDECONV_ISA_DECLARE(isa)                                                        \
  PYDECONV_WINO_DECLARE(wino2, isa)                                                      \
  PYDECONV_WINO_DECLARE(wino4, isa)                                                      \
  void wino_gather_flipped_##isa(const float* __restrict__, const int32_t* __restrict__, \
                                 float* __restrict__);
PYDECONV_ISA_DECLARE(portable)
#if PYDECONV_X86
PYDECONV_ISA_DECLARE(avx2)
PYDECONV_ISA_DECLARE(avx512)
void sgemm_ukernel_6x16_avx2(int64_t, const float*, const float*, float*, int64_t, bool,
                             const TileEpilogue&);
void sgemm_ukernel_avx512(int64_t, int64_t, const float*, int64_t, const float*, float*, int64_t,
                          bool, const TileEpilogue&);
void gemv_rows_avx2(const float*, const float*, int64_t, int64_t, float*);
void gemv_rows_avx512(const float*, const float*, int64_t, int64_t, float*);
void pool_fold_avx2(int, const float*, int64_t, int32_t, bool, float*, int32_t*);
void pool_fold_avx512(int, const float*, int64_t, int32_t, bool, float*, int32_t*);
void lrn_inv_pow075_avx2(const double* d, int64_t m, float* r);
void lrn_inv_pow075_avx2(const double* d, int64_t m, double* r);
void act_exp_rows_avx2(int, const float*, int64_t, float*);
void act_exp_rows_avx512(int, const float*, int64_t, float*);
DepthwisePlane depthwise_plane_for_avx2(const Window2d&);
DepthwisePlane depthwise_plane_for_avx512(const Window2d&);
#endif
#undef PYDECONV_ISA_DECLARE
#undef PYDECONV_WINO_DECLARE

namespace {

#define PYDECONV_WINO_SET(f, isa) \
  {f##_filter_##isa, f##_input_##isa, f##_output_##isa, wino_gather_flipped_##isa}

constexpr KernelTable kPortable{
    Isa::Portable,
    "portable",
    sgemm_ukernel_6x16_portable,
    nullptr,
    "portable",
    gemv_rows_portable,
    direct_tile_portable,
    &direct_shape_portable,
    pool_fold_portable,
    PYDECONV_WINO_SET(wino2, portable),
    PYDECONV_WINO_SET(wino4, portable),
    lrn_inv_pow075_portable,
    lrn_inv_pow075_portable,
    act_exp_rows_portable,
    depthwise_plane_for_portable,
};

#if PYDECONV_X86
constexpr KernelTable kAvx2{
    Isa::Avx2,
    "avx2",
    sgemm_ukernel_6x16_avx2,
    nullptr,
    "avx2_fma_6x16",
    gemv_rows_avx2,
    direct_tile_avx2,
    &direct_shape_avx2,
    pool_fold_avx2,
    PYDECONV_WINO_SET(wino2, avx2),
    PYDECONV_WINO_SET(wino4, avx2),
    lrn_inv_pow075_avx2,
    lrn_inv_pow075_avx2,
    act_exp_rows_avx2,
    depthwise_plane_for_avx2,
};

// AVX-512 tiles of up to 24x16; partial 6-row panels by the AVX2 6x16 kernel (same arithmetic,
// so the two paths give the same bits). LRN's power has no zmm version: AVX2's.
constexpr KernelTable kAvx512{
    Isa::Avx512,
    "avx512",
    sgemm_ukernel_6x16_avx2,
    sgemm_ukernel_avx512,
    "avx512_24x16",
    gemv_rows_avx512,
    direct_tile_avx512,
    &direct_shape_avx512,
    pool_fold_avx512,
    PYDECONV_WINO_SET(wino2, avx512),
    PYDECONV_WINO_SET(wino4, avx512),
    lrn_inv_pow075_avx2,
    lrn_inv_pow075_avx2,
    act_exp_rows_avx512,
    depthwise_plane_for_avx512,
};
#endif

#undef PYDECONV_WINO_SET

}  // namespace

bool cpu_runs(Isa isa) {
  if (isa == Isa::Avx512) return cpu_has_avx512f();
  return isa == Isa::Avx2 ? cpu_has_avx2_fma() : true;
}

Isa best_isa() {
  if (cpu_runs(Isa::Avx512)) return Isa::Avx512;
  return cpu_runs(Isa::Avx2) ? Isa::Avx2 : Isa::Portable;
}

const KernelTable& kernel_table(Isa isa) {
  if (!cpu_runs(isa)) fail(ErrorKind::Value, "kernel_table: this CPU cannot run this ISA");
#if PYDECONV_X86
  if (isa == Isa::Avx512) return kAvx512;
  if (isa == Isa::Avx2) return kAvx2;
#endif
  return kPortable;
}

const KernelTable& kernel_table() {
  const Isa isa = active_isa();  // throws for a PYDECONV_ISA this CPU cannot run
#if PYDECONV_X86
  switch (isa) {
    case Isa::Avx512: return kAvx512;
    case Isa::Avx2: return kAvx2;
    case Isa::Portable: break;
  }
#else
  (void)isa;
#endif
  return kPortable;
}

}  // namespace pydeconv::kernels
