// Tests for image.hpp: PPM I/O, Pillow-exact bilinear resize, to_input and render.
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "check.hpp"
#include "pydeconv/error.hpp"
#include "pydeconv/image.hpp"

using namespace pydeconv;

namespace {

// The deterministic test image also built by tests/test_image_parity.py (keep them in sync).
Image make_src(int w, int h, int c) {
  Image img{w, h, c, std::vector<uint8_t>(static_cast<size_t>(w) * h * c)};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int ch = 0; ch < c; ++ch)
        img.pixels[(static_cast<size_t>(y) * w + x) * c + ch] =
            static_cast<uint8_t>((x * 37 + y * 91 + ch * 53 + (x * y) % 7 * 29) % 256);
  return img;
}

struct Golden {
  int w, h, c, ow, oh;
  std::vector<int> pixels;
};

// Produced by Pillow 13.0.0: Image.fromarray(make_src(w, h, c)).resize((ow, oh), Image.BILINEAR).
// Covers upscaling, downscaling by non-integer factors, 1-pixel rows/columns, grey, and the two
// cases where Pillow >= 13 runs the vertical pass first (8x23 -> 6x7, 12x31 -> 9x5).
const std::vector<Golden>& goldens() {
  static const std::vector<Golden> g = {
      {7, 5, 3, 11, 9, {0,   53,  106, 17,  70,  123, 40,  93,  146, 64,  117, 170, 87,  140, 193,
                        111, 164, 217, 135, 188, 241, 158, 211, 194, 182, 235, 55,  205, 119, 55,
                        222, 19,  72,  30,  83,  136, 52,  105, 119, 81,  126, 102, 111, 102, 132,
                        109, 108, 161, 85,  138, 191, 115, 168, 221, 144, 197, 180, 174, 227, 47,
                        204, 117, 54,  225, 22,  75,  81,  134, 187, 109, 162, 112, 149, 182, 28,
                        189, 77,  68,  147, 55,  108, 42,  95,  148, 82,  135, 188, 122, 175, 158,
                        162, 215, 35,  201, 115, 51,  230, 27,  80,  131, 184, 124, 116, 169, 95,
                        104, 144, 68,  154, 104, 118, 153, 73,  126, 112, 51,  104, 105, 116, 169,
                        122, 175, 158, 172, 225, 46,  161, 136, 73,  145, 56,  109, 182, 235, 32,
                        109, 162, 75,  30,  83,  136, 90,  143, 196, 151, 110, 163, 211, 8,   61,
                        142, 102, 155, 129, 182, 165, 189, 242, 63,  110, 163, 100, 37,  90,  143,
                        90,  143, 83,  89,  142, 133, 85,  138, 191, 65,  118, 171, 108, 119, 120,
                        197, 136, 47,  120, 131, 133, 114, 128, 150, 203, 127, 77,  137, 126, 127,
                        71,  124, 177, 27,  80,  133, 72,  125, 178, 117, 168, 221, 57,  90,  143,
                        84,  119, 89,  177, 230, 56,  99,  152, 122, 102, 85,  138, 213, 33,  86,
                        162, 99,  136, 106, 159, 183, 78,  131, 184, 65,  118, 171, 59,  96,  149,
                        118, 47,  100, 140, 85,  107, 134, 187, 155, 85,  138, 160, 101, 84,  137,
                        203, 23,  76,  176, 112, 72,  140, 193, 76,  108, 161, 214, 61,  114, 167,
                        24,  53,  106, 155, 22,  75,  174, 64,  117, 108, 161, 214, 76,  129, 182,
                        100, 83,  136, 197, 17,  70,  184, 120, 34,  161, 214, 11}},
      {13, 11, 3, 5, 4, {99,  125, 118, 125, 136, 143, 142, 126, 103, 112, 120, 127,
                         138, 162, 111, 102, 125, 146, 117, 109, 131, 133, 121, 114,
                         107, 120, 146, 126, 104, 127, 148, 129, 120, 104, 91,  115,
                         103, 105, 135, 125, 127, 119, 82,  82,  121, 116, 126, 160,
                         138, 116, 122, 127, 125, 133, 129, 130, 155, 137, 113, 122}},
      {1, 9, 3, 3, 4, {75,  128, 130, 75,  128, 130, 75,  128, 130, 91,  144, 122,
                       91,  144, 122, 91,  144, 122, 125, 178, 125, 125, 178, 125,
                       125, 178, 125, 141, 99,  152, 141, 99,  152, 141, 99,  152}},
      {9, 1, 3, 4, 1, {31, 84, 137, 106, 159, 205, 172, 156, 103, 61, 62, 115}},
      {10, 6, 1, 3, 13, {55,  147, 74,  71,  145, 92,  109, 140, 136, 134, 137, 161, 124,
                         139, 127, 113, 141, 96,  99,  133, 89,  84,  124, 82,  89,  130,
                         95,  96,  137, 109, 107, 139, 130, 119, 139, 153, 124, 139, 163}},
      {17, 3, 3, 6, 7, {44,  97,  150, 140, 174, 177, 108, 89,  102, 92,  145, 150, 159, 145,
                        65,  63,  89,  142, 58,  102, 141, 137, 167, 169, 116, 95,  101, 98,
                        140, 144, 158, 144, 71,  79,  95,  134, 100, 118, 115, 130, 144, 145,
                        139, 112, 100, 115, 124, 126, 156, 142, 89,  125, 112, 109, 142, 133,
                        88,  122, 122, 121, 162, 130, 98,  133, 108, 108, 153, 139, 107, 172,
                        130, 84,  127, 133, 101, 132, 126, 127, 140, 145, 99,  133, 111, 124,
                        147, 153, 107, 138, 137, 107, 112, 133, 114, 143, 131, 133, 118, 159,
                        100, 133, 113, 141, 140, 167, 108, 104, 144, 129, 107, 133, 118, 146,
                        132, 135, 111, 164, 100, 133, 114, 146, 138, 172, 108, 93,  146, 137}},
      {3, 3, 3, 1, 1, {105, 126, 111}},
      {8, 23, 3, 6, 7, {84,  137, 119, 108, 113, 124, 122, 108, 137, 128, 161, 155, 174, 131,
                        75,  107, 118, 122, 110, 150, 139, 128, 106, 142, 117, 117, 137, 85,
                        86,  129, 156, 87,  96,  118, 152, 125, 125, 117, 142, 146, 137, 129,
                        139, 119, 108, 109, 77,  109, 89,  117, 146, 128, 119, 149, 143, 117,
                        149, 136, 121, 174, 155, 99,  136, 151, 168, 137, 110, 133, 152, 143,
                        115, 129, 137, 132, 107, 116, 114, 136, 122, 113, 157, 131, 174, 180,
                        164, 144, 87,  157, 120, 99,  116, 143, 130, 139, 95,  140, 128, 113,
                        125, 97,  96,  128, 160, 94,  84,  109, 144, 116, 133, 122, 123, 158,
                        134, 103, 172, 104, 98,  73,  62,  110, 83,  92,  139, 119, 120, 143}},
      {12, 31, 1, 9, 5, {98,  117, 123, 106, 158, 111, 105, 123, 92,  130, 140, 139,
                         124, 109, 133, 128, 138, 138, 131, 128, 131, 121, 153, 135,
                         116, 133, 111, 124, 144, 152, 105, 105, 120, 128, 143, 111,
                         135, 119, 131, 134, 133, 144, 118, 135, 137}},
  };
  return g;
}

std::string tmp_path(const std::string& name) { return "/tmp/pydeconv_test_image_" + name; }

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool throws_format(const std::string& path) {
  try {
    read_ppm(path);
  } catch (const Error& e) {
    return e.kind() == ErrorKind::Format && std::string(e.what()).find(path) != std::string::npos;
  }
  return false;
}

}  // namespace

TEST(resize_matches_pillow_goldens) {
  for (const auto& g : goldens()) {
    Image out = resize_bilinear(make_src(g.w, g.h, g.c), g.ow, g.oh);
    CHECK(out.width == g.ow && out.height == g.oh && out.channels == g.c);
    CHECK(out.pixels.size() == g.pixels.size());
    for (size_t i = 0; i < g.pixels.size(); ++i) {
      if (out.pixels[i] != g.pixels[i])
        check::fail_at(__FILE__, __LINE__,
                       "resize " + std::to_string(g.w) + "x" + std::to_string(g.h) + " -> " +
                           std::to_string(g.ow) + "x" + std::to_string(g.oh) +
                           " differs from Pillow at byte " + std::to_string(i));
    }
  }
}

TEST(resize_same_size_is_identity_and_constant_stays_constant) {
  Image src = make_src(6, 4, 3);
  CHECK(resize_bilinear(src, 6, 4).pixels == src.pixels);
  Image flat{9, 7, 3, std::vector<uint8_t>(9 * 7 * 3, 200)};
  for (auto [w, h] : {std::pair{4, 3}, std::pair{20, 15}, std::pair{1, 1}, std::pair{9, 2}}) {
    Image out = resize_bilinear(flat, w, h);
    for (uint8_t v : out.pixels) CHECK(v == 200);
  }
}

TEST(resize_rejects_bad_arguments) {
  Image src = make_src(4, 4, 3);
  CHECK_THROWS(resize_bilinear(src, 0, 4));
  CHECK_THROWS(resize_bilinear(src, 4, -1));
  Image broken = src;
  broken.pixels.pop_back();
  CHECK_THROWS(resize_bilinear(broken, 2, 2));
  Image empty;
  CHECK_THROWS(resize_bilinear(empty, 2, 2));
}

TEST(ppm_round_trip_rgb_and_grey) {
  for (int c : {3, 1}) {
    Image src = make_src(5, 3, c);
    std::string path = tmp_path("rt" + std::to_string(c) + ".ppm");
    write_ppm(path, src);
    Image back = read_ppm(path);
    CHECK(back.width == 5 && back.height == 3 && back.channels == c);
    CHECK(back.pixels == src.pixels);
    std::remove(path.c_str());
  }
  Image two{2, 2, 2, std::vector<uint8_t>(8)};
  CHECK_THROWS(write_ppm(tmp_path("two.ppm"), two));
}

TEST(ppm_header_comments_and_whitespace) {
  std::string path = tmp_path("comments.ppm");
  write_bytes(path, std::string("P6\n# a comment\n2 # another\n1\n255\n") +
                        "\x01\x02\x03\x04\x05\x06" + "trailing");
  Image img = read_ppm(path);
  CHECK(img.width == 2 && img.height == 1 && img.channels == 3);
  CHECK((img.pixels == std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  std::remove(path.c_str());
}

TEST(ppm_malformed_inputs_throw_format_errors) {
  std::string path = tmp_path("bad.ppm");
  const std::string good = std::string("P5\n3 2\n255\n") + "abcdef";
  const std::vector<std::string> bad = {
      "",
      "P",
      "P3\n1 1\n255\n1 2 3\n",
      "P6\n",
      "P6\n2\n",
      "P6\n2 2\n",
      "P6\n2 2\n65535\n" + std::string(24, 'x'),
      "P5\n0 2\n255\n",
      "P5\n-1 2\n255\n",
      "P5\n99999999999 1\n255\n",
      "P5\n2 1\n255",
      "P5\n2 1\n255\nx",
      "P5\n2 1\n255x12",
      "P5 2 1 16\n12",
  };
  for (const auto& b : bad) {
    write_bytes(path, b);
    if (!throws_format(path)) check::fail_at(__FILE__, __LINE__, "accepted malformed PPM: " + b);
  }
  // Every truncation of a valid file is an error, never a crash.
  for (size_t n = 0; n < good.size(); ++n) {
    write_bytes(path, good.substr(0, n));
    if (!throws_format(path))
      check::fail_at(__FILE__, __LINE__, "accepted truncation at " + std::to_string(n));
  }
  write_bytes(path, good);
  CHECK(read_ppm(path).pixels.size() == 6);
  std::remove(path.c_str());
  CHECK(throws_format(tmp_path("does_not_exist.ppm")));
}

TEST(grey_conversion_matches_pillow) {
  // (R, G, B) -> Image.new("RGB", (1, 1), rgb).convert("L") with Pillow 13.0.0.
  const int cases[][4] = {{255, 0, 0, 76},    {0, 255, 0, 150},     {0, 0, 255, 29},
                          {12, 200, 77, 130}, {255, 255, 255, 255}, {1, 2, 3, 2},
                          {128, 64, 250, 104}};
  for (const auto& c : cases) {
    Image px{1, 1, 3, {uint8_t(c[0]), uint8_t(c[1]), uint8_t(c[2])}};
    CHECK(to_grey(px).pixels[0] == c[3]);
  }
}

TEST(to_input_grey_converts_before_resizing) {
  // Pillow: Image.fromarray(make_src(13, 11, 3)).convert("L").resize((5, 4), Image.BILINEAR).
  const int expect[] = {116, 134, 128, 118, 149, 120, 114, 123, 119, 113,
                        134, 97,  108, 125, 86,  127, 123, 126, 132, 121};
  Preprocess p;
  p.height = 4;
  p.width = 5;
  p.channel_order = "L";
  p.scale = 1.0;
  Tensor t = to_input(make_src(13, 11, 3), p);
  CHECK(t.shape() == Shape::nchw(1, 1, 4, 5));
  for (int i = 0; i < 20; ++i) CHECK(t.data()[i] == float(expect[i]));
}

TEST(to_input_orders_and_normalises_channels) {
  Image img{2, 1, 3, {10, 20, 30, 40, 50, 60}};
  Preprocess p;
  p.height = 1;
  p.width = 2;
  p.mean = {0.1, 0.2, 0.3};
  p.std = {0.5, 0.25, 2.0};
  Tensor rgb = to_input(img, p);
  CHECK(rgb.shape() == Shape::nchw(1, 3, 1, 2));
  CHECK(rgb.plane(0, 0)[0] == float((10 / 255.0 - 0.1) / 0.5));
  CHECK(rgb.plane(0, 2)[1] == float((60 / 255.0 - 0.3) / 2.0));
  p.channel_order = "bgr";  // case-insensitive, like the Python helper
  Tensor bgr = to_input(img, p);
  CHECK(bgr.plane(0, 0)[0] == float((30 / 255.0 - 0.1) / 0.5));  // blue first
  CHECK(bgr.plane(0, 2)[1] == float((40 / 255.0 - 0.3) / 2.0));
  // One mean/std value applies to every channel; a grey image becomes RGB by replication.
  Preprocess q;
  q.mean = {0.5};
  q.scale = 1.0;
  Image grey{1, 1, 1, {7}};
  Tensor g3 = to_input(grey, q);
  CHECK(g3.shape() == Shape::nchw(1, 3, 1, 1));
  for (int c = 0; c < 3; ++c) CHECK(g3.plane(0, c)[0] == 6.5f);
  // Resizing happens when the size differs.
  Preprocess r;
  r.height = 3;
  r.width = 4;
  Tensor resized = to_input(make_src(8, 6, 3), r);
  Image ref = resize_bilinear(make_src(8, 6, 3), 4, 3);
  CHECK(resized.shape() == Shape::nchw(1, 3, 3, 4));
  CHECK(resized.plane(0, 1)[5] == float(ref.pixels[5 * 3 + 1] * (1.0 / 255)));

  Preprocess bad = p;
  bad.mean = {1, 2};
  CHECK_THROWS(to_input(img, bad));
  bad = p;
  bad.channel_order = "RGBA";
  CHECK_THROWS(to_input(img, bad));
  Image rgba{1, 1, 4, {1, 2, 3, 4}};
  CHECK_THROWS(to_input(rgba, Preprocess{}));
}

TEST(render_follows_the_contrast_rule) {
  // 3 channels in BGR order: reversed to RGB; m = 4, v = 0.5 + p / 8, byte = floor(v*255 + 0.5).
  const float bgr[] = {4, -4, 0,
                       1, 2,  -2};  // (C=3, H=1, W=2): B = {4, -4}, G = {0, 1}, R = {2, -2}
  Image img = render(bgr, 3, 1, 2, "BGR");
  CHECK(img.width == 2 && img.height == 1 && img.channels == 3);
  CHECK((img.pixels == std::vector<uint8_t>{191, 128, 255, 64, 159, 0}));
  Image rgb = render(bgr, 3, 1, 2, "RGB");
  CHECK((rgb.pixels == std::vector<uint8_t>{255, 128, 191, 0, 159, 64}));
  // 1 channel: grey replicated to 3 channels.
  const float one[] = {-1, 0.5f};
  Image g = render(one, 1, 1, 2, "RGB");
  CHECK((g.pixels == std::vector<uint8_t>{0, 0, 0, 191, 191, 191}));
  // 2 channels: summed, then grey. Sums are {3, -1}: m = 3.
  const float two[] = {1, -2, 2, 1};
  Image s = render(two, 2, 1, 2, "RGB");
  CHECK((s.pixels == std::vector<uint8_t>{255, 255, 255, 85, 85, 85}));
  // All zero: mid grey everywhere.
  const float zero[] = {0, 0, 0};
  Image z = render(zero, 3, 1, 1, "RGB");
  CHECK((z.pixels == std::vector<uint8_t>{128, 128, 128}));
  const float nan[] = {0, std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS(render(nan, 1, 1, 2, "RGB"));
  CHECK_THROWS(render(one, 1, 1, 2, "XYZ"));
  CHECK_THROWS(render(one, 0, 1, 2, "RGB"));
}

PYDECONV_TEST_MAIN()
