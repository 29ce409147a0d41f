// pydeconv: image helpers for C++ apps, pixel-identical to the Python helpers (pydeconv/image.py).
//
// Only binary PPM/PGM files are read and written (no image codec dependency); resizing is
// bit-exact with Pillow's Image.resize(..., Image.BILINEAR) so C++ and Python feed a model the
// same input. Files that cannot be read or parsed raise Error(Format); bad arguments Error(Value).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pydeconv/tensor.hpp"

namespace pydeconv {

struct Image {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> pixels;  // HWC, row-major, height * width * channels bytes
};

// Binary P6 (RGB, 3 channels) or P5 (grey, 1 channel), maxval 255, '#' comments in the header.
// Bytes after the first image are ignored (Netpbm allows several images in one file). Sizes past
// Limits::max_image_pixels (pydeconv/limits.hpp) are refused before the pixels are read.
Image read_ppm(const std::string& path);
// P6 for 3 channels, P5 for 1.
void write_ppm(const std::string& path, const Image& img);

// Pillow's BILINEAR resize: a separable triangle filter whose support widens by the reduction
// factor when downscaling (antialiasing), 22-bit fixed-point coefficients, horizontal pass first
// into an 8-bit intermediate image, then vertical (vertical first when the height shrinks by more
// than twice as many pixels as the width, as Pillow >= 13 does). Any channel count.
Image resize_bilinear(const Image& img, int width, int height);

// RGB -> grey exactly as Pillow's convert("L"): (R*19595 + G*38470 + B*7471 + 0x8000) >> 16,
// i.e. L = R*299/1000 + G*587/1000 + B*114/1000 rounded. Grey input is returned unchanged.
Image to_grey(const Image& img);

// The defaults here are the format's defaults (docs/FORMAT.md); load_model fills in every field
// (mean and std with one value per input channel), and Python reads the same filled-in answer.
struct Preprocess {
  int height = 0, width = 0;          // model input size; 0 keeps the image's own size
  std::string channel_order = "RGB";  // "RGB", "BGR" or "L" (to_input also takes lower case)
  double scale = 1.0 / 255;
  std::vector<double> mean, std;       // empty = 0 / 1; one value is used for every channel
  std::string source_layout = "NCHW";  // how the original framework laid out its input (a record)
};

// Image -> (1, C, H, W) float32, as pydeconv.image.from_pil: convert to grey ("L") or RGB first
// (grey images are replicated to RGB), then resize when the size differs, then reorder to BGR if
// asked, then x = (pixel * scale - mean[c]) / std[c] computed in double and rounded to float.
Tensor to_input(const Image& img, const Preprocess& p);

// A projection (C, H, W) as an RGB image centred on grey, as pydeconv.image.render:
// m = max |p|; v = 0.5 + p / (2m) (0.5 everywhere when m == 0); byte = clamp(floor(v*255 + 0.5),
// 0, 255), all in double. 3 channels are colour (BGR is reversed to RGB), 1 channel is grey, any
// other count is summed over channels first and shown grey. The result always has 3 channels.
// Non-finite values raise Error(Value).
Image render(const float* chw, int channels, int height, int width,
             const std::string& channel_order);

}  // namespace pydeconv
