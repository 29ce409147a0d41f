// pydeconv: the process-wide settings. Each starts from its PYDECONV_* environment variable, read
// in settings.cpp and nowhere else (all of them together, at the first use of any), and may be
// changed by its setter afterwards, from any thread. A flag variable is on when it is set to
// anything but "" or "0".
#pragma once
#include <string>

namespace pydeconv {

// PYDECONV_REFERENCE=1: the naive reference kernels (kernels/ref/, the definition of correct;
// slow) instead of the optimised ones. The default of Ctx::reference, so an embedder's Ctx{} and
// Python's forward/project (pydeconv.set_reference_kernels) follow it.
bool reference_kernels();
void set_reference_kernels(bool on);

// Winograd convolution (kernels.hpp, conv2d): 0 off, 1 auto (the default), 2 / 4 that tile size
// wherever it applies. PYDECONV_WINOGRAD=0 / 2 / 4 (any other value: auto). set_winograd_mode
// throws Value for any other mode.
int winograd_mode();
void set_winograd_mode(int mode);

// The instruction set of the kernels (one table of kernel functions per ISA, kernels/dispatch):
// "portable", "avx2" (AVX2 + FMA) or "avx512" (AVX-512F), or "auto", the best this CPU and OS
// run (the default). PYDECONV_ISA=portable / avx2 / avx512 / auto. set_isa throws Value for an
// unknown name or an ISA this CPU cannot run (and leaves the setting alone); a PYDECONV_ISA
// naming one makes every kernel call (and isa()) throw the same error until set_isa replaces it.
// isa() is the ISA in use, never "auto".
std::string isa();
void set_isa(const std::string& name);

// PYDECONV_POISON=1 (tests): every buffer-pool block handed out starts as NaN bytes, so a kernel
// that reads memory it never wrote fails loudly instead of seeing a fresh page's zeros.
bool poison_buffers();

// PYDECONV_PROFILE=1: every layer's forward and projection time goes to stderr.
bool profile_layers();

}  // namespace pydeconv
