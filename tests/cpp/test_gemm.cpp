// Tests of the blocked SGEMM (portable, AVX2 and AVX-512 micro-kernels, each where the CPU has it;
// 1 and 2 threads) against sgemm_ref:
// every edge of the blocking (k=1, k<KC, k%KC!=0, m<MR, n<NR, ragged m/n, several MC/NC blocks),
// strided operands, all four transpose combinations, accumulate on/off, the pre-packed A path,
// B supplied by a panel packer with a bias epilogue,
// bit-identical results across thread counts and between the AVX2 and AVX-512 paths, ISA
// selection, and argument errors.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "check.hpp"
#include "isa_modes.hpp"
#include "kernels/gemm.hpp"
#include "pydeconv/settings.hpp"

using namespace pydeconv::kernels;

namespace {

constexpr float kSentinel = 12345.0f;  // fills C's padding columns: sgemm must never touch them

struct Case {
  bool ta, tb;
  int64_t m, n, k;
  bool accumulate;
  // Row strides with padding, so every operand is strided.
  int64_t lda() const { return (ta ? m : k) + 3; }
  int64_t ldb() const { return (tb ? k : n) + 5; }
  int64_t ldc() const { return n + 2; }
  std::string str() const {
    return "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " m=" + std::to_string(m) +
           " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " acc=" + std::to_string(accumulate);
  }
};

std::vector<float> random_vec(int64_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = u(rng);
  return v;
}

struct Operands {
  std::vector<float> a, b,
      c0;  // c0: the initial C (random values in the matrix, sentinel in the padding)
};

Operands make_operands(const Case& cs, std::mt19937& rng) {
  Operands op;
  op.a = random_vec((cs.ta ? cs.k : cs.m) * cs.lda(), rng);
  op.b = random_vec((cs.tb ? cs.n : cs.k) * cs.ldb(), rng);
  op.c0 = random_vec(cs.m * cs.ldc(), rng);
  for (int64_t i = 0; i < cs.m; ++i) {
    for (int64_t j = cs.n; j < cs.ldc(); ++j) op.c0[i * cs.ldc() + j] = kSentinel;
  }
  return op;
}

// Allowed error per C element, from the rigorous bound for a float dot product of length k
// (plus one add when accumulating): |error| <= (k + 2) * u * sum_p |a_ip * b_pj|, u = 2^-24.
std::vector<double> tolerances(const Case& cs, const Operands& op) {
  const double u = std::ldexp(1.0, -24);
  std::vector<double> tol(static_cast<size_t>(cs.m * cs.n));
  for (int64_t i = 0; i < cs.m; ++i) {
    for (int64_t j = 0; j < cs.n; ++j) {
      double s = cs.accumulate ? std::fabs(op.c0[i * cs.ldc() + j]) : 0.0;
      for (int64_t p = 0; p < cs.k; ++p) {
        const float av = cs.ta ? op.a[p * cs.lda() + i] : op.a[i * cs.lda() + p];
        const float bv = cs.tb ? op.b[j * cs.ldb() + p] : op.b[p * cs.ldb() + j];
        s += std::fabs(static_cast<double>(av) * bv);
      }
      tol[i * cs.n + j] = (cs.k + 2) * u * s + 1e-30;
    }
  }
  return tol;
}

void check_close(const Case& cs, const std::vector<double>& tol, const std::vector<float>& ref,
                 const std::vector<float>& got, const std::string& what) {
  for (int64_t i = 0; i < cs.m; ++i) {
    for (int64_t j = 0; j < cs.ldc(); ++j) {
      const size_t at = static_cast<size_t>(i * cs.ldc() + j);
      if (j >= cs.n) {
        if (got[at] != kSentinel)
          check::fail_at(__FILE__, __LINE__, what + ": padding written, " + cs.str());
        continue;
      }
      if (!(std::fabs(static_cast<double>(got[at]) - ref[at]) <= tol[i * cs.n + j])) {
        check::fail_at(__FILE__, __LINE__,
                       what + ": " + cs.str() + " at (" + std::to_string(i) + "," +
                           std::to_string(j) + ") got " + std::to_string(got[at]) + " want " +
                           std::to_string(ref[at]));
      }
    }
  }
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

// Fails unless the AVX2 and AVX-512 results (when both ran) are bit-identical: same FMA chain per
// element, only the tile shape differs. `by_isa` maps isa_modes() names to results.
void check_avx_paths_agree(const std::vector<std::pair<std::string, std::vector<float>>>& by_isa,
                           const std::string& what) {
  const std::vector<float>* avx2 = nullptr;
  const std::vector<float>* avx512 = nullptr;
  for (const auto& [isa, result] : by_isa) {
    if (isa == "avx2") avx2 = &result;
    if (isa == "avx512") avx512 = &result;
  }
  if (avx2 != nullptr && avx512 != nullptr && !same_bits(*avx2, *avx512))
    check::fail_at(__FILE__, __LINE__, "avx512 and avx2 results differ: " + what);
}

// Runs one case on every micro-kernel at 1 and 2 threads: each close to the reference, the
// 2-thread result bit-identical to the 1-thread one, and AVX-512 bit-identical to AVX2.
void run_case(const Case& cs, std::mt19937& rng) {
  const Operands op = make_operands(cs, rng);
  std::vector<float> ref = op.c0;
  sgemm_ref(cs.ta, cs.tb, cs.m, cs.n, cs.k, op.a.data(), cs.lda(), op.b.data(), cs.ldb(),
            ref.data(), cs.ldc(), cs.accumulate);
  const std::vector<double> tol = tolerances(cs, op);
  std::vector<std::pair<std::string, std::vector<float>>> by_isa;
  for (const std::string& isa : isa_modes()) {
    pydeconv::set_isa(isa);
    std::vector<float> one = op.c0, two = op.c0;
    sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, op.a.data(), cs.lda(), op.b.data(), cs.ldb(), one.data(),
          cs.ldc(), cs.accumulate, 1);
    sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, op.a.data(), cs.lda(), op.b.data(), cs.ldb(), two.data(),
          cs.ldc(), cs.accumulate, 2);
    const std::string what = std::string(sgemm_isa());
    check_close(cs, tol, ref, one, what + " 1 thread");
    if (!same_bits(one, two))
      check::fail_at(__FILE__, __LINE__, what + ": 2 threads differ, " + cs.str());
    by_isa.emplace_back(isa, std::move(one));
  }
  pydeconv::set_isa("auto");
  check_avx_paths_agree(by_isa, cs.str());
}

}  // namespace

// Every transpose combination and accumulate mode over sizes straddling MR=6, NR=16, KC=256 and
// MC=288 (m=301 is two row blocks; n=100 and the larger m are big enough to run in parallel), and
// the AVX-512 path's tiles of 1-4 full panels (6: one; 19: three + a partial panel; 24, 48: four;
// 37: four + two + a partial panel; 301: all of these across two row blocks).
TEST(sgemm_edge_sweep) {
  std::mt19937 rng(7);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (int64_t m : {1, 5, 6, 7, 19, 24, 37, 48, 301}) {
        for (int64_t n : {1, 15, 16, 17, 100}) {
          for (int64_t k : {1, 7, 300}) {
            for (bool acc : {false, true}) run_case({ta, tb, m, n, k, acc}, rng);
          }
        }
      }
    }
  }
}

// k around and past the KC block length (one, exactly one, uneven and several KC blocks).
TEST(sgemm_k_blocks) {
  std::mt19937 rng(11);
  for (int64_t k : {255, 256, 257, 511, 512, 777, 1100}) {
    for (bool ta : {false, true}) run_case({ta, false, 19, 45, k, true}, rng);
    run_case({false, true, 13, 33, k, false}, rng);
  }
}

// More than one NC block (n > 4080) and several row blocks with column chunks.
TEST(sgemm_wide_and_tall) {
  std::mt19937 rng(13);
  run_case({false, false, 9, 4200, 20, false}, rng);
  run_case({true, true, 7, 8200, 3, true}, rng);
  run_case({false, false, 600, 50, 40, true}, rng);
}

// Repeated calls are bit-identical, and so are 1, 2 and 3 threads on a shape that splits
// both M and N.
TEST(sgemm_deterministic) {
  std::mt19937 rng(17);
  const Case cs{false, false, 200, 530, 600, false};
  const Operands op = make_operands(cs, rng);
  std::vector<std::pair<std::string, std::vector<float>>> by_isa;
  for (const std::string& isa : isa_modes()) {
    pydeconv::set_isa(isa);
    std::vector<float> first = op.c0;
    sgemm(false, false, cs.m, cs.n, cs.k, op.a.data(), cs.lda(), op.b.data(), cs.ldb(),
          first.data(), cs.ldc(), false, 1);
    for (int threads : {1, 2, 3, 2}) {
      std::vector<float> again = op.c0;
      sgemm(false, false, cs.m, cs.n, cs.k, op.a.data(), cs.lda(), op.b.data(), cs.ldb(),
            again.data(), cs.ldc(), false, threads);
      CHECK(same_bits(first, again));
    }
    by_isa.emplace_back(isa, std::move(first));
  }
  pydeconv::set_isa("auto");
  check_avx_paths_agree(by_isa, "sgemm_deterministic");
}

// sgemm_packed equals sgemm bit for bit (same blocking and order), for A and A^T.
TEST(sgemm_packed_matches_sgemm) {
  std::mt19937 rng(19);
  for (bool ta : {false, true}) {
    for (const Case& cs : {Case{ta, false, 70, 90, 300, false}, Case{ta, true, 5, 17, 1, true},
                           Case{ta, false, 301, 40, 513, true}}) {
      const Operands op = make_operands(cs, rng);
      const PackedA pa = pack_a(cs.ta, cs.m, cs.k, op.a.data(), cs.lda());
      CHECK(pa.m() == cs.m && pa.k() == cs.k && !pa.empty());
      for (const std::string& isa : isa_modes()) {
        pydeconv::set_isa(isa);
        for (int threads : {1, 2}) {
          std::vector<float> plain = op.c0, packed = op.c0;
          sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, op.a.data(), cs.lda(), op.b.data(), cs.ldb(),
                plain.data(), cs.ldc(), cs.accumulate, threads);
          sgemm_packed(pa, cs.tb, cs.n, op.b.data(), cs.ldb(), packed.data(), cs.ldc(),
                       cs.accumulate, threads);
          CHECK(same_bits(plain, packed));
        }
      }
    }
  }
  pydeconv::set_isa("auto");
}

// A BPanels source reading a stored op(B), the simplest possible packer.
class MatrixPanels : public BPanels {
 public:
  MatrixPanels(bool tb, const float* b, int64_t ldb) : tb_(tb), b_(b), ldb_(ldb) {}
  void pack(int64_t j0, int64_t nr, int64_t p0, int64_t kcb, float* dst) const override {
    for (int64_t p = 0; p < kcb; ++p)
      for (int64_t j = 0; j < kSgemmNR; ++j)
        dst[p * kSgemmNR + j] =
            j < nr ? (tb_ ? b_[(j0 + j) * ldb_ + p0 + p] : b_[(p0 + p) * ldb_ + j0 + j]) : 0.0f;
  }

 private:
  bool tb_;
  const float* b_;
  int64_t ldb_;
};

// sgemm_packed_panels: bit-identical to sgemm_packed without a bias; with a bias, close to
// the reference plus the bias on every row (accumulating or not), and 2 threads equal 1.
TEST(sgemm_packed_panels_matches) {
  std::mt19937 rng(23);
  for (const Case& cs :
       {Case{false, false, 70, 90, 300, false}, Case{false, true, 5, 17, 1, true},
        Case{false, false, 301, 40, 513, true}, Case{false, true, 13, 200, 31, false}}) {
    const Operands op = make_operands(cs, rng);
    const PackedA pa = pack_a(false, cs.m, cs.k, op.a.data(), cs.lda());
    const MatrixPanels panels(cs.tb, op.b.data(), cs.ldb());
    const std::vector<float> bias = random_vec(cs.m, rng);
    std::vector<float> ref = op.c0;
    sgemm_ref(false, cs.tb, cs.m, cs.n, cs.k, op.a.data(), cs.lda(), op.b.data(), cs.ldb(),
              ref.data(), cs.ldc(), cs.accumulate);
    std::vector<double> tol = tolerances(cs, op);
    for (int64_t i = 0; i < cs.m; ++i)
      for (int64_t j = 0; j < cs.n; ++j) {
        ref[i * cs.ldc() + j] += bias[i];
        tol[i * cs.n + j] +=
            2 * std::ldexp(1.0, -24) * (std::fabs(bias[i]) + std::fabs(ref[i * cs.ldc() + j]));
      }
    std::vector<std::pair<std::string, std::vector<float>>> by_isa;
    for (const std::string& isa : isa_modes()) {
      pydeconv::set_isa(isa);
      const std::string what = std::string(sgemm_isa()) + " panels";
      for (int threads : {1, 2}) {
        std::vector<float> plain = op.c0, viap = op.c0;
        sgemm_packed(pa, cs.tb, cs.n, op.b.data(), cs.ldb(), plain.data(), cs.ldc(), cs.accumulate,
                     threads);
        sgemm_packed_panels(pa, cs.n, panels, nullptr, viap.data(), cs.ldc(), cs.accumulate,
                            threads);
        CHECK(same_bits(plain, viap));
      }
      std::vector<float> one = op.c0, two = op.c0;
      sgemm_packed_panels(pa, cs.n, panels, bias.data(), one.data(), cs.ldc(), cs.accumulate, 1);
      sgemm_packed_panels(pa, cs.n, panels, bias.data(), two.data(), cs.ldc(), cs.accumulate, 2);
      check_close(cs, tol, ref, one, what + " + bias");
      CHECK(same_bits(one, two));
      // The ReLU epilogue: C itself as computed, relu(C) and [C > 0] beside it (every tile, edge
      // tiles included, at 1 and 2 threads), or relu(C) in place of C without a mask.
      for (int threads : {1, 2}) {
        std::vector<float> c = op.c0, r(c.size(), -7.f), inplace = op.c0;
        std::vector<uint8_t> mk(c.size(), 9);
        ReluEpilogue ep{r.data(), mk.data()};
        sgemm_packed_panels(pa, cs.n, panels, bias.data(), c.data(), cs.ldc(), cs.accumulate,
                            threads, &ep);
        CHECK(same_bits(c, one));
        ReluEpilogue own{inplace.data(), nullptr};
        sgemm_packed_panels(pa, cs.n, panels, bias.data(), inplace.data(), cs.ldc(), cs.accumulate,
                            threads, &own);
        for (int64_t i = 0; i < cs.m; ++i)
          for (int64_t j = 0; j < cs.ldc(); ++j) {
            const size_t at = static_cast<size_t>(i * cs.ldc() + j);
            if (j >= cs.n) {  // padding columns: untouched
              CHECK(r[at] == -7.f && mk[at] == 9 && same_bits({inplace[at]}, {op.c0[at]}));
              continue;
            }
            const float want = one[at] > 0.f ? one[at] : 0.f;
            CHECK(r[at] == want && inplace[at] == want && mk[at] == (one[at] > 0.f ? 1 : 0));
          }
      }
      by_isa.emplace_back(isa, std::move(one));
    }
    check_avx_paths_agree(by_isa, "panels + bias " + cs.str());
  }
  pydeconv::set_isa("auto");
  // k = 0 with a bias: C = bias (+ C).
  const float a[2] = {1, 2}, bias[2] = {3, 4};
  const PackedA pa = pack_a(false, 2, 0, a, 1);
  const MatrixPanels none(false, a, 1);
  float c[4] = {1, 1, 1, 1};
  sgemm_packed_panels(pa, 2, none, bias, c, 2, true, 1);
  CHECK(c[0] == 4.0f && c[1] == 4.0f && c[2] == 5.0f && c[3] == 5.0f);
  sgemm_packed_panels(pa, 2, none, bias, c, 2, false, 1);
  CHECK(c[0] == 3.0f && c[3] == 4.0f);
  // ... and the ReLU epilogue on it.
  const float negative[2] = {-3, 4};
  float r[4] = {0, 0, 0, 0};
  uint8_t mk[4] = {7, 7, 7, 7};
  const ReluEpilogue ep{r, mk};
  sgemm_packed_panels(pa, 2, none, negative, c, 2, false, 1, &ep);
  CHECK(c[0] == -3.0f && r[0] == 0.0f && r[1] == 0.0f && r[2] == 4.0f && r[3] == 4.0f);
  CHECK(mk[0] == 0 && mk[1] == 0 && mk[2] == 1 && mk[3] == 1);
}

// k = 0 is an empty sum: C becomes 0, or stays as it was when accumulating; m or n = 0 is a no-op.
TEST(sgemm_empty_sizes) {
  const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
  float c[4] = {9, 9, 9, 9};
  sgemm(false, false, 2, 2, 0, a, 1, b, 2, c, 2, true, 2);
  for (float v : c) CHECK(v == 9.0f);
  sgemm(false, false, 2, 2, 0, a, 1, b, 2, c, 2, false, 2);
  for (float v : c) CHECK(v == 0.0f);
  c[0] = 3.0f;
  sgemm(false, false, 0, 2, 2, a, 2, b, 2, c, 2, false, 1);
  sgemm(false, false, 2, 0, 2, a, 2, b, 2, c, 2, false, 1);
  CHECK(c[0] == 3.0f);
  const PackedA pa = pack_a(false, 2, 0, a, 1);
  sgemm_packed(pa, false, 2, b, 2, c, 2, false, 1);
  CHECK(c[0] == 0.0f);
}

TEST(sgemm_bad_arguments) {
  const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
  float c[4] = {};
  CHECK_THROWS(sgemm(false, false, -1, 2, 2, a, 2, b, 2, c, 2, false, 1));
  CHECK_THROWS(sgemm(false, false, 2, 2, 2, a, 1, b, 2, c, 2, false, 1));  // lda < k
  CHECK_THROWS(sgemm(false, true, 2, 2, 2, a, 2, b, 1, c, 2, false, 1));   // ldb < k
  CHECK_THROWS(sgemm(false, false, 2, 2, 2, a, 2, b, 2, c, 1, false, 1));  // ldc < n
  CHECK_THROWS(sgemm_packed(PackedA(), false, 2, b, 2, c, 2, false, 1));
}

// A 2x3 * 3x2 product worked by hand, so the reference itself is checked.
TEST(sgemm_ref_by_hand) {
  const float a[6] = {1, 2, 3, 4, 5, 6};     // [[1,2,3],[4,5,6]]
  const float b[6] = {7, 8, 9, 10, 11, 12};  // [[7,8],[9,10],[11,12]]
  float c[4] = {1, 1, 1, 1};
  sgemm_ref(false, false, 2, 2, 3, a, 3, b, 2, c, 2, true);
  CHECK(c[0] == 59.0f && c[1] == 65.0f && c[2] == 140.0f && c[3] == 155.0f);
  float d[4] = {};
  sgemm(false, false, 2, 2, 3, a, 3, b, 2, d, 2, false, 1);
  CHECK(d[0] == 58.0f && d[1] == 64.0f && d[2] == 139.0f && d[3] == 154.0f);
}

// The ISA setting and the names sgemm_isa() reports; "auto" picks the best ISA this CPU runs.
TEST(sgemm_isa_names) {
  pydeconv::set_isa("portable");
  CHECK(std::string(sgemm_isa()) == "portable");
  pydeconv::set_isa("auto");
  const std::string best = sgemm_isa();
  const std::vector<std::string> modes = isa_modes();
  const std::string expect = modes.back() == "avx512" ? "avx512_24x16"
                             : modes.back() == "avx2" ? "avx2_fma_6x16"
                                                      : "portable";
  CHECK(best == expect);
  for (const std::string& isa : modes) {
    pydeconv::set_isa(isa);
    const std::string name = sgemm_isa();
    const std::string want = isa == "avx512" ? "avx512_24x16"
                             : isa == "avx2" ? "avx2_fma_6x16"
                                             : "portable";
    CHECK(name == want);
    CHECK(pydeconv::isa() == isa);
  }
  pydeconv::set_isa("auto");
  CHECK(std::string(sgemm_isa()) == best);
  CHECK(pydeconv::isa() == modes.back());
  CHECK_THROWS(pydeconv::set_isa("sse9"));
  CHECK_THROWS(pydeconv::set_isa(""));
  CHECK(std::string(sgemm_isa()) == best);  // a rejected name leaves the choice alone
}

PYDECONV_TEST_MAIN()
