// pydeconv: the public C++ API in one include. These headers are all that is installed, and all
// an embedding application needs (docs/ARCHITECTURE.md, "The public C++ API"):
//   error.hpp   pydeconv::Error and its ErrorKind
//   tensor.hpp  Shape, Tensor (float32), IndexTensor (the int32 switches)
//   ctx.hpp     Ctx: threads and reference kernels for one call
//   settings.hpp  process-wide settings (reference kernels, Winograd, instruction set, ...)
//   net.hpp     Net (forward, start signals, projections under a Rule, positions), Trace, At,
//               LayerSpec / GraphSpec (build a net in code), LayerInfo
//   model.hpp   load_model / model_from_json: .npz model files with their preprocessing
//   image.hpp   PPM/PGM files, the Pillow-exact resize, to_input, render
#pragma once

#include "pydeconv/ctx.hpp"
#include "pydeconv/error.hpp"
#include "pydeconv/image.hpp"
#include "pydeconv/model.hpp"
#include "pydeconv/net.hpp"
#include "pydeconv/settings.hpp"
#include "pydeconv/tensor.hpp"
