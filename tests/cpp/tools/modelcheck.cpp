// modelcheck FILE.npz: loads a model file with pydeconv::load_model (the C++ reader and validator,
// the one definition of the format) and prints what it decided, for tests/test_format_corpus.py to
// compare with Python's pydeconv.load on the same files:
//   accepted: "ok", then "channel_order\tRGB", "scale\t%.17g", "mean\t%.17g,...", "std\t...",
//             "size\tH,W", "source_layout\tNCHW", "labels\tN"; exit status 0
//   refused:  "error\tKIND\tmessage" with KIND format, graph, shape, not_found, range or value;
//             exit status 1
#include <cstdio>
#include <string>
#include <vector>

#include "pydeconv/error.hpp"
#include "pydeconv/model.hpp"

namespace {

const char* kind_name(pydeconv::ErrorKind k) {
  switch (k) {
    case pydeconv::ErrorKind::Format: return "format";
    case pydeconv::ErrorKind::Graph: return "graph";
    case pydeconv::ErrorKind::Shape: return "shape";
    case pydeconv::ErrorKind::NotFound: return "not_found";
    case pydeconv::ErrorKind::Range: return "range";
    case pydeconv::ErrorKind::Value: return "value";
  }
  return "?";
}

std::string joined(const std::vector<double>& v) {
  std::string s;
  char buf[40];
  for (double d : v) {
    std::snprintf(buf, sizeof(buf), "%.17g", d);
    s += (s.empty() ? "" : ",") + std::string(buf);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: modelcheck FILE.npz\n");
    return 2;
  }
  try {
    const pydeconv::Model m = pydeconv::load_model(argv[1]);
    const pydeconv::Preprocess& p = m.preprocess;
    std::printf(
        "ok\nchannel_order\t%s\nscale\t%.17g\nmean\t%s\nstd\t%s\nsize\t%d,%d\n"
        "source_layout\t%s\nlabels\t%zu\n",
        p.channel_order.c_str(), p.scale, joined(p.mean).c_str(), joined(p.std).c_str(), p.height,
        p.width, p.source_layout.c_str(), m.labels.size());
  } catch (const pydeconv::Error& e) {
    std::printf("error\t%s\t%s\n", kind_name(e.kind()), e.what());
    return 1;
  }
  return 0;
}
