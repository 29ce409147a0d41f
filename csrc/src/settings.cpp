// pydeconv: the process-wide settings (settings.hpp) and the one place that reads PYDECONV_*
// environment variables.
#include "pydeconv/settings.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

#include "pydeconv/error.hpp"

namespace pydeconv {
namespace {

// The environment as the process started, read once, at the first use of any setting.
struct Environment {
  bool reference = false, poison = false, profile = false;
  int winograd = 1;
};

std::string variable(const char* name) {
  const char* e = std::getenv(name);
  return e != nullptr ? e : "";
}

bool flag(const char* name) {
  const std::string v = variable(name);
  return !v.empty() && v != "0";
}

const Environment& environment() {
  static const Environment env = [] {
    Environment e;
    e.reference = flag("PYDECONV_REFERENCE");
    e.poison = flag("PYDECONV_POISON");
    e.profile = flag("PYDECONV_PROFILE");
    const std::string w = variable("PYDECONV_WINOGRAD");
    e.winograd = w == "0" ? 0 : w == "2" ? 2 : w == "4" ? 4 : 1;
    return e;
  }();
  return env;
}

std::atomic<bool>& reference_flag() {
  static std::atomic<bool> on{environment().reference};
  return on;
}

std::atomic<int>& winograd_flag() {
  static std::atomic<int> mode{environment().winograd};
  return mode;
}

}  // namespace

bool reference_kernels() { return reference_flag().load(std::memory_order_relaxed); }
void set_reference_kernels(bool on) { reference_flag().store(on, std::memory_order_relaxed); }

int winograd_mode() { return winograd_flag().load(std::memory_order_relaxed); }
void set_winograd_mode(int mode) {
  if (mode != 0 && mode != 1 && mode != 2 && mode != 4)
    fail(ErrorKind::Value,
         "Winograd mode must be 0 (off), 1 (auto), 2 or 4, not " + std::to_string(mode));
  winograd_flag().store(mode, std::memory_order_relaxed);
}

bool poison_buffers() { return environment().poison; }
bool profile_layers() { return environment().profile; }

}  // namespace pydeconv
