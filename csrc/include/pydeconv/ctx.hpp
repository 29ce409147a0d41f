// pydeconv: how to run a call: the thread count and whether to use the naive reference kernels
// (the definition of correct; slow), by default the reference_kernels() setting
// (PYDECONV_REFERENCE, settings.hpp).
#pragma once
#include "pydeconv/settings.hpp"

namespace pydeconv {

struct Ctx {
  int threads = 1;
  bool reference = reference_kernels();
};

}  // namespace pydeconv
