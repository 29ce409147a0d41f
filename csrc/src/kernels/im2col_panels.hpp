// Implicit im2col: the B operand of a convolution GEMM, packed panel by panel straight from the
// input planes, so the K x P column matrix is never written (it would be written once and read
// back once more by the GEMM's own packing).
//
// GEMM row p is (channel c, kernel row ki, kernel column kj) in that order (the weight layout);
// GEMM columns are output positions, taken from a list of rectangles (one per sample for the
// forward, one per sample's region for the transposed conv), each row-major, one after another.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/kernels.hpp"

namespace pydeconv::kernels {

// Output positions [oy0, oy0 + rows) x [ox0, ox0 + cols) of one sample, as GEMM columns
// [col0, col0 + rows * cols). Input positions outside [ylo, yhi) x [xlo, xhi) read as zero.
struct ColRect {
  const float* src = nullptr;  // the sample's plane of the group's first input channel
  int64_t oy0 = 0, ox0 = 0, rows = 0, cols = 0;
  int64_t col0 = 0;
  int64_t ylo = 0, yhi = 0, xlo = 0, xhi = 0;
};

class Im2colPanels : public BPanels {
 public:
  // g: the kernel geometry (sizes, strides, top/left padding, dilation); planes of h x w floats,
  // `channels` of them per sample; rects ordered by col0 and contiguous.
  Im2colPanels(const Window2d& g, int64_t channels, int64_t h, int64_t w,
               std::vector<ColRect> rects);
  int64_t k() const { return channels_ * g_.kh * g_.kw; }
  int64_t n() const;
  void pack(int64_t j0, int64_t nr, int64_t p0, int64_t kcb, float* dst) const override;

 private:
  // A run of a panel's columns inside one output row of one rectangle.
  struct Run {
    const float* src;  // the rectangle's sample planes
    int64_t iy0, ix0;  // input position of kernel tap (0, 0) for the run's first column
    int64_t len, at;   // number of columns, first column within the panel
    int64_t ylo, yhi, xlo, xhi;
  };
  void pack_run(const Run& u, int64_t offset, int64_t ki, int64_t kj, float* o) const;
  void copy_run(const Run& u, int64_t offset, int64_t ki, int64_t kj, int64_t lo, int64_t hi,
                float* o) const;
  // True when every kernel tap of every column of the runs reads inside its rectangle.
  bool interior(const Run* runs, int n) const;

  Window2d g_;
  int64_t channels_, h_, w_;
  std::vector<ColRect> rects_;
  bool contiguous_ = false;  // 1x1, stride 1, no padding, whole planes: column j is plane[j]
};

}  // namespace pydeconv::kernels
