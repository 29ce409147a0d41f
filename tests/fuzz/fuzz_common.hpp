// Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp, built with -DPYDECONV_FUZZ=ON).
//
// The contract under test: a reader given any bytes either returns or throws pydeconv::Error.
// Any other exception is an escape and aborts (libFuzzer then saves the input as a crash); a
// memory error or undefined behaviour is caught by ASan/UBSan.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "pydeconv/error.hpp"

namespace fuzz {

// The public readers take a path: the input goes into an anonymous in-memory file, named through
// /proc/self/fd so that no disk is touched and nothing is left behind.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("pydeconv-fuzz", 0);
    if (fd_ < 0) std::abort();
    for (size_t off = 0; off < size;) {
      ssize_t n = write(fd_, data + off, size - off);
      if (n <= 0) std::abort();
      off += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { close(fd_); }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Runs `body`; pydeconv::Error is the accepted way to refuse an input, anything else aborts.
template <typename F>
void expect_error_family(const char* what, F&& body) {
  try {
    body();
  } catch (const pydeconv::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ESCAPE from %s: %s (not a pydeconv::Error)\n", what, e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "ESCAPE from %s: a non-std exception\n", what);
    std::abort();
  }
}

}  // namespace fuzz
