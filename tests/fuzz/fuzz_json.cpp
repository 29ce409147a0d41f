// libFuzzer: the strict JSON reader of the model graph. Besides "returns or throws Error", checks
// the documented round trip: parse(dump(v)) == v for every value it accepts.
#include <cstdlib>

#include "fuzz_common.hpp"
// The one line naming the JSON header (internal, csrc/src/format/json.hpp; CMake puts both
// csrc/include and csrc/src on this target's include path).
#include "format/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_error_family("Json::parse", [&] {
    const pydeconv::Json v = pydeconv::Json::parse(text);
    const std::string once = v.dump();
    if (pydeconv::Json::parse(once) != v || pydeconv::Json::parse(once).dump() != once) {
      std::fprintf(stderr, "JSON round trip differs for %s\n", once.c_str());
      std::abort();
    }
  });
  return 0;
}
