// libFuzzer: the C++ model reader (.npz archive, .npy members, JSON graph, graph validation)
// through the public entry point pydeconv::load_model.
#include "fuzz_common.hpp"
#include "pydeconv/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::MemFile file(data, size);
  fuzz::expect_error_family("load_model", [&] { pydeconv::load_model(file.path()); });
  return 0;
}
