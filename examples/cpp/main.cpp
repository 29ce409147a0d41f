// deconv_project MODEL.npz IMAGE.ppm LAYER CHANNEL OUT.ppm
//
// Loads a pydeconv model and a binary PPM image, runs the forward pass, and writes the
// Zeiler-Fergus deconvnet projection of CHANNEL's strongest activation in LAYER as a PPM, with the
// same preprocessing and rendering as the Python helpers (pydeconv.image.load / render).
#include <cstdio>
#include <string>

#include "pydeconv/pydeconv.hpp"  // the whole public API

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s MODEL.npz IMAGE.ppm LAYER CHANNEL OUT.ppm\n", argv[0]);
    return 2;
  }
  try {
    pydeconv::Model model = pydeconv::load_model(argv[1]);
    pydeconv::Image image = pydeconv::read_ppm(argv[2]);
    const std::string layer = argv[3];
    std::size_t used = 0;
    const long channel = std::stol(argv[4], &used);
    if (used != std::string(argv[4]).size()) throw std::invalid_argument("CHANNEL");

    pydeconv::Ctx ctx;
    ctx.threads = 2;
    pydeconv::Tensor x = pydeconv::to_input(image, model.preprocess);
    pydeconv::Trace trace = model.net->forward(ctx, x, layer);
    pydeconv::At at;  // the strongest activation, as in the paper
    pydeconv::Tensor start = model.net->start_signal(trace, layer, {channel}, at);
    const pydeconv::Position where = model.net->positions(trace, layer, {channel}, at)[0];
    pydeconv::Tensor proj = model.net->project(ctx, trace, layer, start, pydeconv::Rule::Deconvnet);

    const pydeconv::Shape& s = proj.shape();
    pydeconv::Image out =
        pydeconv::render(proj.data(), static_cast<int>(s.c), static_cast<int>(s.h),
                         static_cast<int>(s.w), model.preprocess.channel_order);
    pydeconv::write_ppm(argv[5], out);
    std::printf("%s: layer %s channel %ld at (%lld, %lld) -> %s (%dx%d)\n", argv[1], layer.c_str(),
                channel, static_cast<long long>(where.y), static_cast<long long>(where.x), argv[5],
                out.width, out.height);
    return 0;
  } catch (const std::invalid_argument&) {
    std::fprintf(stderr, "deconv_project: error: CHANNEL must be an integer, got '%s'\n", argv[4]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "deconv_project: error: %s\n", e.what());
  }
  return 1;
}
