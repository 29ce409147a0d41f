// The kernel dispatch point (kernels/dispatch.hpp) and the settings (pydeconv/settings.hpp): one
// table per instruction set this CPU runs, every entry set, set_isa choosing the table every op
// reads, and the reference-kernel setting as Ctx's default. That each op gives the reference
// results on every ISA is tested beside the op (test_gemm, test_conv, test_pool_lrn sweep
// isa_modes()).
#include <cstdint>
#include <string>
#include <vector>

#include "check.hpp"
#include "isa_modes.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/gemm.hpp"
#include "kernels/kernels.hpp"
#include "pydeconv/error.hpp"
#include "pydeconv/settings.hpp"

using namespace pydeconv;
using namespace pydeconv::kernels;

namespace {

bool wino_set(const KernelTable::Winograd& w) {
  return w.filter != nullptr && w.input != nullptr && w.output != nullptr && w.gather != nullptr;
}

}  // namespace

TEST(every_table_entry_is_set) {
  for (const std::string& name : isa_modes()) {
    set_isa(name);
    const KernelTable& t = kernel_table();
    CHECK(t.name == name);
    CHECK(&kernel_table(t.isa) == &t);
    CHECK(isa() == name);
    CHECK(t.sgemm_6x16 != nullptr && t.sgemm_name != nullptr);
    CHECK(std::string(sgemm_isa()) == t.sgemm_name);
    CHECK((t.sgemm_wide != nullptr) == (t.isa == Isa::Avx512));  // the only optional entry
    CHECK(t.gemv_rows != nullptr);
    CHECK(t.direct_tile != nullptr && t.direct_shape != nullptr);
    CHECK(t.direct_shape->r > 0 && 8 % t.direct_shape->r == 0);  // direct_conv_pack pads to 8
    CHECK(t.pool_fold != nullptr);
    CHECK(wino_set(t.wino2) && wino_set(t.wino4));
    CHECK(t.lrn_pow075_float != nullptr && t.lrn_pow075_double != nullptr);
    CHECK(t.act_exp_rows != nullptr && t.depthwise_plane_for != nullptr);
  }
  set_isa("auto");
  CHECK(&kernel_table() == &kernel_table(best_isa()));
}

TEST(portable_table_holds_only_portable_kernels) {
  // Forcing the portable ISA must leave no op on x86 code (LRN once bypassed the switch).
  const KernelTable& p = kernel_table(Isa::Portable);
  CHECK(p.sgemm_6x16 == &sgemm_ukernel_6x16_portable);
  CHECK(p.gemv_rows == &gemv_rows_portable);
  CHECK(p.direct_tile == &direct_tile_portable && p.direct_shape == &direct_shape_portable);
  void (*pow_f)(const double*, int64_t, float*) = lrn_inv_pow075_portable;
  void (*pow_d)(const double*, int64_t, double*) = lrn_inv_pow075_portable;
  CHECK(p.lrn_pow075_float == pow_f && p.lrn_pow075_double == pow_d);
  CHECK(p.act_exp_rows == &act_exp_rows_portable);
  CHECK(p.depthwise_plane_for == &depthwise_plane_for_portable);
  // Every x86 table replaces each portable kernel (the LRN power: AVX2's on both).
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (!cpu_runs(isa)) continue;
    const KernelTable& t = kernel_table(isa);
    CHECK(t.sgemm_6x16 != p.sgemm_6x16 && t.gemv_rows != p.gemv_rows);
    CHECK(t.direct_tile != p.direct_tile && t.pool_fold != p.pool_fold);
    CHECK(t.wino2.input != p.wino2.input && t.wino4.output != p.wino4.output);
    CHECK(t.lrn_pow075_float != p.lrn_pow075_float && t.lrn_pow075_double != p.lrn_pow075_double);
    CHECK(t.act_exp_rows != p.act_exp_rows && t.depthwise_plane_for != p.depthwise_plane_for);
  }
}

TEST(set_isa_refuses_unknown_and_missing) {
  set_isa("auto");
  const std::string best = isa();
  CHECK_THROWS(set_isa("sse9"));
  CHECK_THROWS(set_isa("AVX2"));
  if (!cpu_runs(Isa::Avx512)) CHECK_THROWS(set_isa("avx512"));
  if (!cpu_runs(Isa::Avx2)) CHECK_THROWS(set_isa("avx2"));
  CHECK(isa() == best);  // a refused name leaves the setting alone
  bool value_error = false;
  try {
    set_isa("neon");
  } catch (const Error& e) {
    value_error = e.kind() == ErrorKind::Value;
  }
  CHECK(value_error);
}

TEST(reference_setting_is_ctx_default) {
  const bool before = reference_kernels();
  set_reference_kernels(true);
  CHECK(Ctx{}.reference);
  CHECK(!(Ctx{2, false}.reference));  // an explicit choice still wins
  set_reference_kernels(false);
  CHECK(!Ctx{}.reference);
  set_reference_kernels(before);
}

PYDECONV_TEST_MAIN()
