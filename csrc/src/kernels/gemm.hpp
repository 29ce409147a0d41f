// pydeconv: single-precision GEMM, the workhorse of conv2d / transposed conv / linear.
#pragma once
#include <cstdint>
#include <memory>

namespace pydeconv::kernels {

// Row-major C[m x n] = op(A)[m x k] * op(B)[k x n]  (+ C when accumulate).
//   op(A) = A (m x k, row stride lda) or, with trans_a, A stored k x m (row stride lda) used
//   transposed. op(B) = B (k x n, row stride ldb) or, with trans_b, B stored n x k (row stride ldb)
//   used transposed.
// `threads` OpenMP threads at most (1 = serial). Deterministic: for a given thread count the
// result is bit-identical run to run (each C element is summed in a fixed order).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate, int threads);

// The naive triple loop (double accumulation): the definition of correct, used by tests and when
// reference kernels are forced (PYDECONV_REFERENCE=1).
void sgemm_ref(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
               int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate);

// Which micro-kernel sgemm uses now (the ISA setting, pydeconv/settings.hpp: set_isa):
// "avx512_24x16" (AVX-512 tiles of up to 24x16; partial 6-row panels and partial 16-column panels
// by the AVX2 6x16 kernel), "avx2_fma_6x16" or "portable". The AVX-512 and AVX2 paths give
// bit-identical results; the portable one may differ from them in the last bits (separate
// multiply and add vs FMA).
const char* sgemm_isa();

// op(A) packed once into the layout sgemm's micro-kernel reads, for a matrix reused on every call
// (conv weights: out = W * col forward, col = W^T * gout on the way down). Immutable and cheap to
// copy (shared storage), so one PackedA may serve many threads at once.
class PackedA {
 public:
  PackedA() = default;
  int64_t m() const { return m_; }
  int64_t k() const { return k_; }
  bool empty() const { return data_ == nullptr; }
  const float* data() const { return data_.get(); }  // the packed panels (layout private to gemm)

 private:
  friend PackedA pack_a(bool trans_a, int64_t m, int64_t k, const float* a, int64_t lda);
  friend void unpack_a(const PackedA& a, float* out, int64_t lda);
  int64_t m_ = 0, k_ = 0;
  std::shared_ptr<const float> data_;
};

// Packs op(A) (m x k; A stored k x m when trans_a), as sgemm would on every call.
PackedA pack_a(bool trans_a, int64_t m, int64_t k, const float* a, int64_t lda);
// The inverse: writes op(A) back as a row-major m x k matrix (row stride lda >= k).
void unpack_a(const PackedA& a, float* out, int64_t lda);

// C[m x n] = op(A) * op(B) (+ C) with A pre-packed; m, k come from `a`. Bit-identical to sgemm
// with the same arguments (same blocking, same summation order).
void sgemm_packed(const PackedA& a, bool trans_b, int64_t n, const float* b, int64_t ldb, float* c,
                  int64_t ldc, bool accumulate, int threads);

// Width of the B panels the micro-kernel reads (its NR), height of its A panels (its MR).
constexpr int64_t kSgemmNR = 16;
constexpr int64_t kSgemmMR = 6;

// The packed layouts, for producers that write operands straight into them (Winograd transforms).
// k is cut into KC blocks of sgemm_kc(k) (the last may be shorter), one after another.
//   A (m x k): in each KC block [pc, pc + kcb), ceil(m / MR) panels of kcb x MR, a[p * MR + i].
//   B (k x n): in each KC block, ceil(n / NR) panels of kcb x NR, b[p * NR + j].
// Rows/columns past m/n inside the last panel must be zero. The offsets of element (i, p) / (p, j):
int64_t sgemm_kc(int64_t k);
inline int64_t sgemm_packed_a_offset(int64_t m, int64_t k, int64_t kc, int64_t i, int64_t p) {
  const int64_t pc = p / kc * kc, kcb = k - pc < kc ? k - pc : kc;
  const int64_t pm = (m + kSgemmMR - 1) / kSgemmMR;
  return pc * pm * kSgemmMR + (i / kSgemmMR) * kcb * kSgemmMR + (p - pc) * kSgemmMR + i % kSgemmMR;
}
inline int64_t sgemm_packed_b_offset(int64_t n, int64_t k, int64_t kc, int64_t p, int64_t j) {
  const int64_t pc = p / kc * kc, kcb = k - pc < kc ? k - pc : kc;
  const int64_t pn = (n + kSgemmNR - 1) / kSgemmNR;
  return pc * pn * kSgemmNR + (j / kSgemmNR) * kcb * kSgemmNR + (p - pc) * kSgemmNR + j % kSgemmNR;
}
// Floats a packed A (m x k) / B (k x n) occupies.
inline int64_t sgemm_packed_a_size(int64_t m, int64_t k) {
  return (m + kSgemmMR - 1) / kSgemmMR * kSgemmMR * k;
}
inline int64_t sgemm_packed_b_size(int64_t k, int64_t n) {
  return (n + kSgemmNR - 1) / kSgemmNR * kSgemmNR * k;
}

// C[m x n] = A * B (+ C) with both operands already in the packed layouts above; on the calling
// thread only, no allocation, no packing: the micro-kernels read a and b in place. Same blocking
// and summation order as the other entry points.
void sgemm_prepacked(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
                     int64_t ldc, bool accumulate);

// op(B) supplied panel by panel instead of as a stored matrix, for GEMMs whose B would only be
// written to be packed again (conv2d packs its im2col panels straight from the input planes).
// pack() is called from several threads at once: it must be safe for that, and never throw or
// allocate.
class BPanels {
 public:
  virtual ~BPanels() = default;
  // dst[p * kSgemmNR + j] = op(B)(p0 + p, j0 + j) for p < kcb, j < nr; 0 for nr <= j < kSgemmNR.
  virtual void pack(int64_t j0, int64_t nr, int64_t p0, int64_t kcb, float* dst) const = 0;
};

// A ReLU applied to each finished tile of C while it is still in cache (a conv followed by a ReLU,
// without a second pass over the output): relu(C) into `out` (C's layout and ldc; may be C
// itself) and, when `mask` is not null, [C > 0] into mask (same layout, one byte per element).
struct ReluEpilogue {
  float* out = nullptr;
  uint8_t* mask = nullptr;
};

// C[m x n] = A * B + bias (+ C when accumulate), A pre-packed, B from `b` (k = a.k() rows);
// bias[i] is added to row i when `bias` is not null (while the tile is in registers' reach).
// Same blocking and summation order as sgemm_packed. With `relu`, see ReluEpilogue.
void sgemm_packed_panels(const PackedA& a, int64_t n, const BPanels& b, const float* bias, float* c,
                         int64_t ldc, bool accumulate, int threads,
                         const ReluEpilogue* relu = nullptr);

}  // namespace pydeconv::kernels
