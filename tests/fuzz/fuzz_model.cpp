// libFuzzer: the C++ model reader (.npz archive, .npy members, JSON graph, graph validation)
// through the public entry point pydeconv::load_model; a model that loads and is small then runs
// one forward pass and one projection (layer, channel and rule drawn from the input), so that
// every layer kind's kernels run under ASan + UBSan on the shapes and attributes a file declares.
#include "format/json.hpp"  // internal (csrc/src): the input shape from the graph text
#include "fuzz_common.hpp"
#include "pydeconv/model.hpp"

namespace {

// Activations of one image (bytes, all layers) past which a loaded model only loads: a forward
// of a large model would take the fuzzer's time without reaching new code.
constexpr int64_t kRunBytes = int64_t(4) << 20;

void run(const pydeconv::Model& m, const uint8_t* data, size_t size) {
  using namespace pydeconv;
  const Net& net = *m.net;
  const auto& info = net.info();
  if (info.empty()) return;
  int64_t bytes = 0;
  for (const auto& li : info) bytes += li.shape.numel() * int64_t(sizeof(float));
  if (bytes > kRunBytes) return;
  const Json graph = Json::parse(m.graph_json);
  const Json& dims = graph.at("input").at("shape");  // validated at load
  const Shape s = Shape::nchw(1, dims.at(0).as_int(), dims.at(1).as_int(), dims.at(2).as_int());
  uint32_t h = 2166136261u;  // FNV-1a of the file: the input values, layer, channel and rule
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;
  Ctx ctx;
  ctx.threads = 1;
  if (s.numel() * int64_t(sizeof(float)) > kRunBytes) return;
  Tensor x(s);
  for (int64_t i = 0; i < x.numel(); ++i) {
    h = h * 1103515245u + 12345u;
    x.data()[i] = static_cast<float>(static_cast<int32_t>(h >> 8) % 2001 - 1000) / 500.0f;
  }
  const LayerInfo& li = info[h % info.size()];
  Trace t = net.forward(ctx, x);
  const int64_t channel = (h >> 4) % li.shape.c;
  const Rule rule = static_cast<Rule>((h >> 12) % 3);
  net.project_channels(ctx, t, li.name, {channel}, At{}, rule);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::MemFile file(data, size);
  fuzz::expect_error_family("load_model", [&] {
    pydeconv::Model m = pydeconv::load_model(file.path());
    run(m, data, size);
  });
  return 0;
}
