#include "kernels/kernels.hpp"

namespace pydeconv {

int64_t Window2d::out_size(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1,
                           int64_t d) const {
  int64_t span = in + p0 + p1 - d * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
  // ceil_mode: the last window must start inside the input or the begin padding.
  if (ceil_mode && (out - 1) * s >= in + p0) --out;
  return out;
}

}  // namespace pydeconv
