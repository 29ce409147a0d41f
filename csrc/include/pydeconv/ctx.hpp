// pydeconv: how to run a call (public): the thread count and whether to use the naive reference
// kernels (the definition of correct; slow).
#pragma once

namespace pydeconv {

struct Ctx {
  int threads = 1;
  bool reference = false;
};

}  // namespace pydeconv
