// pydeconv: the process-wide settings (settings.hpp) and the one place that reads PYDECONV_*
// environment variables.
#include "pydeconv/settings.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

#include "kernels/dispatch.hpp"
#include "pydeconv/error.hpp"

namespace pydeconv {
namespace {

// The environment as the process started, read once, at the first use of any setting.
struct Environment {
  bool reference = false, poison = false, profile = false;
  int winograd = 1;
  std::string isa;  // as given ("" when unset): checked when the kernels first need it
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
    e.isa = variable("PYDECONV_ISA");
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

// The ISA named `name` ("auto": the best this CPU runs), or a Value error naming `what`.
kernels::Isa parse_isa(const std::string& name, const std::string& what) {
  using kernels::Isa;
  if (name == "auto") return kernels::best_isa();
  Isa isa = Isa::Portable;
  if (name == "avx2") {
    isa = Isa::Avx2;
  } else if (name == "avx512") {
    isa = Isa::Avx512;
  } else if (name != "portable") {
    fail(ErrorKind::Value, what + ": unknown ISA '" + name + "' (portable, avx2, avx512 or auto)");
  }
  if (!kernels::cpu_runs(isa)) fail(ErrorKind::Value, what + ": this CPU cannot run " + name);
  return isa;
}

// The Isa in use, always one this CPU runs, or kUnset until the first use reads PYDECONV_ISA
// (a bad value throws there, at every use, until set_isa replaces it).
constexpr int kUnset = -1;
std::atomic<int> g_isa{kUnset};

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

std::string isa() { return kernels::kernel_table().name; }

void set_isa(const std::string& name) {
  g_isa.store(static_cast<int>(parse_isa(name, "set_isa")), std::memory_order_relaxed);
}

bool poison_buffers() { return environment().poison; }
bool profile_layers() { return environment().profile; }

namespace kernels {
Isa active_isa() {
  const int isa = g_isa.load(std::memory_order_relaxed);
  if (isa != kUnset) return static_cast<Isa>(isa);
  const std::string& e = environment().isa;
  const int want = static_cast<int>(parse_isa(e.empty() ? "auto" : e, "PYDECONV_ISA=" + e));
  // A set_isa racing with this first read wins.
  int unset = kUnset;
  g_isa.compare_exchange_strong(unset, want, std::memory_order_relaxed);
  return static_cast<Isa>(g_isa.load(std::memory_order_relaxed));
}
}  // namespace kernels

}  // namespace pydeconv
