// Image I/O, Pillow-exact bilinear resize, preprocessing and projection rendering (image.hpp).
#include "pydeconv/image.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>

#include "pydeconv/error.hpp"
#include "pydeconv/limits.hpp"

namespace pydeconv {
namespace {

// Larger images are refused before any allocation (64k x 64k covers any real photograph).
constexpr int kMaxSide = 1 << 16;

size_t image_bytes(int width, int height, int channels) {
  return static_cast<size_t>(width) * static_cast<size_t>(height) * static_cast<size_t>(channels);
}

void check_image(const Image& img, const char* what) {
  if (img.width <= 0 || img.height <= 0 || img.width > kMaxSide || img.height > kMaxSide ||
      img.channels <= 0 || img.channels > 4)
    fail(ErrorKind::Value, std::string(what) + ": bad image size " + std::to_string(img.width) +
                               "x" + std::to_string(img.height) + "x" +
                               std::to_string(img.channels));
  if (img.pixels.size() != image_bytes(img.width, img.height, img.channels))
    fail(ErrorKind::Value,
         std::string(what) + ": pixel buffer size does not match width*height*channels");
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// ---------------------------------------------------------------------------------------------
// PPM

// Reads one unsigned decimal header field, skipping whitespace and '#' comments before it.
int header_field(const std::vector<unsigned char>& d, size_t& pos, const std::string& path,
                 const char* what) {
  for (;;) {
    while (pos < d.size() && std::isspace(d[pos])) ++pos;
    if (pos < d.size() && d[pos] == '#') {
      while (pos < d.size() && d[pos] != '\n' && d[pos] != '\r') ++pos;
      continue;
    }
    break;
  }
  if (pos >= d.size() || !std::isdigit(d[pos]))
    fail(ErrorKind::Format, path + ": malformed PPM header (expected the " + what + ")");
  int64_t v = 0;
  while (pos < d.size() && std::isdigit(d[pos])) {
    v = v * 10 + (d[pos++] - '0');
    if (v > kMaxSide) fail(ErrorKind::Format, path + ": PPM " + what + " too large");
  }
  return static_cast<int>(v);
}

// ---------------------------------------------------------------------------------------------
// Pillow's resampling (libImaging/Resample.c), re-derived: one filter row per output pixel.

constexpr int kPrecisionBits = 32 - 8 - 2;  // 8 bits of result, 2 of headroom, rest fraction

struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;  // input window of each output pixel
  std::vector<int32_t> k;         // ksize fixed-point weights per output pixel
};

Coeffs bilinear_coeffs(int in_size, int out_size) {
  Coeffs c;
  // Pillow works from a float box (0, in_size); the scale and centres are then computed in double.
  double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  double filterscale = std::max(scale, 1.0);  // widen the triangle when shrinking (antialias)
  double support = 1.0 * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    double center = (xx + 0.5) * scale;
    double ss = 1.0 / filterscale;
    // Pillow rounds with a truncating (int) cast, then clips to the image.
    int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double t = std::fabs((x + xmin - center + 0.5) * ss);
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      total += w[x];
    }
    int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      double v = total != 0.0 ? w[x] / total : w[x];
      // Round half away from zero to fixed point, as Pillow's normalize_coeffs_8bpc.
      k[x] = static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits)
                                        : 0.5 + v * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = std::max(xmax, 0);
  }
  return c;
}

uint8_t clip8(int64_t acc) {
  int64_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One pass along x (horizontal) of every row; `c` maps output columns to input windows.
Image resample_rows(const Image& in, int out_w) {
  Coeffs c = bilinear_coeffs(in.width, out_w);
  Image out{out_w, in.height, in.channels,
            std::vector<uint8_t>(image_bytes(out_w, in.height, in.channels))};
  const int ch = in.channels;
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* src = &in.pixels[static_cast<size_t>(y) * in.width * ch];
    uint8_t* dst = &out.pixels[static_cast<size_t>(y) * out_w * ch];
    for (int xx = 0; xx < out_w; ++xx) {
      const int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
      for (int b = 0; b < ch; ++b) {
        int64_t acc = 1 << (kPrecisionBits - 1);  // + 0.5 for rounding
        for (int x = 0; x < c.count[xx]; ++x)
          acc += int64_t(src[(c.first[xx] + x) * ch + b]) * k[x];
        dst[xx * ch + b] = clip8(acc);
      }
    }
  }
  return out;
}

// One pass along y (vertical) of every column.
Image resample_cols(const Image& in, int out_h) {
  Coeffs c = bilinear_coeffs(in.height, out_h);
  Image out{in.width, out_h, in.channels,
            std::vector<uint8_t>(image_bytes(in.width, out_h, in.channels))};
  const size_t row = static_cast<size_t>(in.width) * in.channels;
  for (int yy = 0; yy < out_h; ++yy) {
    const int32_t* k = &c.k[static_cast<size_t>(yy) * c.ksize];
    uint8_t* dst = &out.pixels[static_cast<size_t>(yy) * row];
    for (size_t i = 0; i < row; ++i) {
      int64_t acc = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < c.count[yy]; ++y)
        acc += int64_t(in.pixels[(c.first[yy] + y) * row + i]) * k[y];
      dst[i] = clip8(acc);
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Image read_ppm(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorKind::Format, path + ": cannot open image file");
  std::vector<unsigned char> d((std::istreambuf_iterator<char>(f)),
                               std::istreambuf_iterator<char>());
  if (d.size() < 2 || d[0] != 'P' || (d[1] != '6' && d[1] != '5'))
    fail(ErrorKind::Format, path + ": not a binary PPM/PGM file (expected P6 or P5)");
  Image img;
  img.channels = d[1] == '6' ? 3 : 1;
  size_t pos = 2;
  img.width = header_field(d, pos, path, "width");
  img.height = header_field(d, pos, path, "height");
  int maxval = header_field(d, pos, path, "maxval");
  if (img.width == 0 || img.height == 0)
    fail(ErrorKind::Format, path + ": PPM image has zero size");
  if (maxval != 255)
    fail(ErrorKind::Format,
         path + ": only PPM maxval 255 is supported (got " + std::to_string(maxval) + ")");
  const int64_t max_pixels = limits().max_image_pixels;
  if (int64_t(img.width) * img.height > max_pixels)
    fail(ErrorKind::Format, path + ": PPM declares " + std::to_string(img.width) + "x" +
                                std::to_string(img.height) + " pixels, past " +
                                limit_str("max_image_pixels", max_pixels));
  // Exactly one whitespace byte separates the header from the pixels.
  if (pos >= d.size() || !std::isspace(d[pos]))
    fail(ErrorKind::Format, path + ": malformed PPM header");
  ++pos;
  size_t n = image_bytes(img.width, img.height, img.channels);
  if (d.size() - pos < n)
    fail(ErrorKind::Format, path + ": truncated PPM (" + std::to_string(d.size() - pos) + " of " +
                                std::to_string(n) + " pixel bytes)");
  img.pixels.assign(d.begin() + static_cast<std::ptrdiff_t>(pos),
                    d.begin() + static_cast<std::ptrdiff_t>(pos + n));
  return img;
}

void write_ppm(const std::string& path, const Image& img) {
  check_image(img, "write_ppm");
  if (img.channels != 3 && img.channels != 1)
    fail(ErrorKind::Value,
         "write_ppm: PPM holds 1 or 3 channels, got " + std::to_string(img.channels));
  std::ofstream f(path, std::ios::binary);
  std::string header = std::string(img.channels == 3 ? "P6" : "P5") + "\n" +
                       std::to_string(img.width) + " " + std::to_string(img.height) + "\n255\n";
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(img.pixels.data()),
          static_cast<std::streamsize>(img.pixels.size()));
  f.close();
  if (!f) fail(ErrorKind::Format, path + ": cannot write image file");
}

Image resize_bilinear(const Image& img, int width, int height) {
  check_image(img, "resize_bilinear");
  if (width <= 0 || height <= 0 || width > kMaxSide || height > kMaxSide)
    fail(ErrorKind::Value, "resize_bilinear: bad target size " + std::to_string(width) + "x" +
                               std::to_string(height));
  // Pillow skips a pass whose size does not change (the pass would be the identity anyway).
  // Since Pillow 13 (PR #9549) the vertical pass runs first when the height shrinks by more than
  // twice as many pixels as the width; the 8-bit intermediate makes the order visible in the
  // result, so it is reproduced exactly. (Older Pillow always ran horizontal first.)
  const int dy = img.height - height, dx = img.width - width;
  const bool vertical_first = dy > 0 && dy > dx * 2;
  Image out = img;
  if (vertical_first) {
    out = resample_cols(out, height);
    if (width != img.width) out = resample_rows(out, width);
  } else {
    if (width != img.width) out = resample_rows(out, width);
    if (height != img.height) out = resample_cols(out, height);
  }
  return out;
}

Image to_grey(const Image& img) {
  check_image(img, "to_grey");
  if (img.channels == 1) return img;
  if (img.channels != 3)
    fail(ErrorKind::Value,
         "to_grey: expected 1 or 3 channels, got " + std::to_string(img.channels));
  Image out{img.width, img.height, 1, std::vector<uint8_t>(image_bytes(img.width, img.height, 1))};
  for (size_t i = 0; i < out.pixels.size(); ++i) {
    const uint8_t* p = &img.pixels[i * 3];
    out.pixels[i] =
        static_cast<uint8_t>((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
  }
  return out;
}

Tensor to_input(const Image& img, const Preprocess& p) {
  check_image(img, "to_input");
  if (img.channels != 1 && img.channels != 3)
    fail(ErrorKind::Value, "to_input: expected a grey or RGB image, got " +
                               std::to_string(img.channels) + " channels");
  const std::string order = upper(p.channel_order);
  if (order != "RGB" && order != "BGR" && order != "L")
    fail(ErrorKind::Value,
         "unknown channel_order '" + p.channel_order + "' (expected RGB, BGR or L)");
  const int c = order == "L" ? 1 : 3;
  auto per_channel = [&](const std::vector<double>& v, double dflt, const char* key) {
    if (v.empty()) return std::vector<double>(c, dflt);
    if (v.size() == 1) return std::vector<double>(c, v[0]);
    if (static_cast<int>(v.size()) != c)
      fail(ErrorKind::Shape, std::string("preprocess ") + key + " has " + std::to_string(v.size()) +
                                 " values for " + std::to_string(c) + " channels");
    return v;
  };
  const std::vector<double> mean = per_channel(p.mean, 0.0, "mean"),
                            std = per_channel(p.std, 1.0, "std");

  // Convert first, then resize: the order of Pillow's img.convert(mode).resize(size).
  Image src;
  if (c == 1) {
    src = to_grey(img);
  } else if (img.channels == 1) {
    src = Image{img.width, img.height, 3,
                std::vector<uint8_t>(image_bytes(img.width, img.height, 3))};
    for (size_t i = 0; i < img.pixels.size(); ++i)
      std::fill_n(&src.pixels[i * 3], 3, img.pixels[i]);
  } else {
    src = img;
  }
  const int h = p.height > 0 ? p.height : img.height, w = p.width > 0 ? p.width : img.width;
  if (h != src.height || w != src.width) src = resize_bilinear(src, w, h);

  Tensor t(Shape::nchw(1, c, h, w));
  const size_t plane = static_cast<size_t>(h) * w;
  for (int ch = 0; ch < c; ++ch) {
    const int from = order == "BGR" ? 2 - ch : ch;  // BGR: tensor channel 0 is the image's blue
    float* dst = t.plane(0, ch);
    for (size_t i = 0; i < plane; ++i)
      dst[i] = static_cast<float>((src.pixels[i * c + from] * p.scale - mean[ch]) / std[ch]);
  }
  return t;
}

Image render(const float* chw, int channels, int height, int width,
             const std::string& channel_order) {
  const std::string order = upper(channel_order);
  if (order != "RGB" && order != "BGR" && order != "L")
    fail(ErrorKind::Value,
         "unknown channel_order '" + channel_order + "' (expected RGB, BGR or L)");
  if (channels <= 0 || height <= 0 || width <= 0 || height > kMaxSide || width > kMaxSide)
    fail(ErrorKind::Value, "render: bad projection shape");
  const size_t plane = static_cast<size_t>(height) * width;
  // The values shown: the 3 colour planes (in RGB order) or one grey plane, in double.
  const int shown = channels == 3 ? 3 : 1;
  std::vector<double> v(plane * shown, 0.0);
  for (int c = 0; c < channels; ++c) {
    int to = channels == 3 ? (order == "BGR" ? 2 - c : c) : 0;
    const float* src = chw + static_cast<size_t>(c) * plane;
    double* dst = &v[static_cast<size_t>(to) * plane];
    for (size_t i = 0; i < plane; ++i) {
      if (!std::isfinite(src[i]))
        fail(ErrorKind::Value, "projection contains NaN or infinite values");
      dst[i] += src[i];
    }
  }
  double m = 0.0;
  for (double x : v) m = std::max(m, std::fabs(x));
  Image img{width, height, 3, std::vector<uint8_t>(plane * 3)};
  for (int c = 0; c < 3; ++c) {
    const double* src = &v[static_cast<size_t>(shown == 3 ? c : 0) * plane];
    for (size_t i = 0; i < plane; ++i) {
      double x = m == 0.0 ? 0.5 : 0.5 + src[i] / (2.0 * m);
      double b = std::floor(x * 255.0 + 0.5);
      img.pixels[i * 3 + c] = static_cast<uint8_t>(b < 0 ? 0 : b > 255 ? 255 : b);
    }
  }
  return img;
}

}  // namespace pydeconv
