// The instruction sets the C++ tests sweep, by their set_isa names: "portable" always, then
// "avx2" and "avx512" where this CPU runs them.
#pragma once
#include <string>
#include <vector>

#include "kernels/dispatch.hpp"

inline std::vector<std::string> isa_modes() {
  namespace k = pydeconv::kernels;
  std::vector<std::string> modes;
  for (k::Isa isa : {k::Isa::Portable, k::Isa::Avx2, k::Isa::Avx512})
    if (k::cpu_runs(isa)) modes.push_back(k::kernel_table(isa).name);
  return modes;
}
