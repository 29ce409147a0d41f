// npzdump FILE.npz: one line per member, "name<TAB>dtype<TAB>[d0,d1,...]<TAB>sum", the sum of all
// elements in double (%.17g). Used by tests/test_npz_cpp.py to check the C++ reader against files
// NumPy itself wrote. Exit status 1 with the error message on stderr when the file is rejected.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "format/npz.hpp"
#include "pydeconv/error.hpp"

namespace {

double half_to_double(uint16_t h) {
  int exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  double v = exp == 0    ? std::ldexp(mant, -24)
             : exp == 31 ? (mant ? NAN : INFINITY)
                         : std::ldexp(mant + 1024, exp - 25);
  return (h & 0x8000) ? -v : v;
}

// Element i of a little-endian array as a double (the host is little-endian, as pydeconv requires).
double element(const pydeconv::NpyArray& a, int64_t i) {
  const unsigned char* p = a.bytes.data() + i * a.itemsize();
  const char kind = a.dtype[1];
  auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return v;
  };
  // Each branch converts to double itself: a ?: chain would first convert int32 to uint32.
  switch (a.itemsize()) {
    case 1:
      if (kind == 'i') return load(int8_t());
      return load(uint8_t());
    case 2:
      if (kind == 'f') return half_to_double(load(uint16_t()));
      if (kind == 'i') return load(int16_t());
      return load(uint16_t());
    case 4:
      if (kind == 'f') return load(float());
      if (kind == 'i') return load(int32_t());
      return load(uint32_t());
    default:
      if (kind == 'f') return load(double());
      if (kind == 'i') return static_cast<double>(load(int64_t()));
      return static_cast<double>(load(uint64_t()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: npzdump FILE.npz\n");
    return 2;
  }
  try {
    for (const auto& a : pydeconv::read_npz(argv[1])) {
      std::string shape = "[";
      for (size_t i = 0; i < a.shape.size(); ++i)
        shape += (i ? "," : "") + std::to_string(a.shape[i]);
      double sum = 0.0;
      for (int64_t i = 0; i < a.numel(); ++i) sum += element(a, i);
      std::printf("%s\t%s\t%s]\t%.17g\n", a.name.c_str(), a.dtype.c_str(), shape.c_str(), sum);
    }
  } catch (const pydeconv::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
