// libFuzzer: the C++ image reader (binary PPM/PGM) through the public pydeconv::read_ppm.
#include "fuzz_common.hpp"
#include "pydeconv/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::MemFile file(data, size);
  fuzz::expect_error_family("read_ppm", [&] {
    const pydeconv::Image img = pydeconv::read_ppm(file.path());
    const size_t want = static_cast<size_t>(img.width) * img.height * img.channels;
    if (img.width <= 0 || img.height <= 0 || img.pixels.size() != want) std::abort();
  });
  return 0;
}
