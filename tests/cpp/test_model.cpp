// Model files from C++: model_from_json's decisions (docs/FORMAT.md), the same that Python gets
// through the bindings (tests/test_format_corpus.py runs the shared corpus through both).
#include <map>
#include <string>

#include "check.hpp"
#include "pydeconv/error.hpp"
#include "pydeconv/model.hpp"

using namespace pydeconv;

namespace {

// A conv (2 -> 3 channels, 3x3) and a ReLU on a 2x6x5 input; `pre` is the preprocess object.
std::string graph(const std::string& pre = "{}", const std::string& relu_extra = "") {
  return R"({"format": "pydeconv", "version": 1, "name": "t",
    "input": {"name": "input", "shape": [2, 6, 5]}, "preprocess": )" +
         pre + R"(,
    "layers": [
      {"name": "conv", "kind": "conv2d", "inputs": ["input"], "attrs": {"padding": [1, 1]},
       "params": {"weight": [3, 2, 3, 3]}},
      {"name": "relu", "kind": "relu", "inputs": ["conv"])" +
         relu_extra + R"(}]})";
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  return s.replace(s.find(from), from.size(), to);
}

std::map<std::string, Tensor> params() {
  return {{"conv/weight", Tensor(Shape::nchw(3, 2, 3, 3), 0.5f)}};
}

void expect_error(const std::string& text, ErrorKind kind, const std::string& needle,
                  std::map<std::string, Tensor> p = params()) {
  try {
    model_from_json(text, std::move(p), "m.npz");
  } catch (const Error& e) {
    CHECK(e.kind() == kind);
    CHECK(std::string(e.what()).rfind("m.npz: ", 0) == 0);
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
    return;
  }
  CHECK(!"no error");
}

}  // namespace

TEST(defaults_are_filled_in) {
  Model m = model_from_json(graph(), params());
  CHECK(m.preprocess.height == 6 && m.preprocess.width == 5);
  CHECK(m.preprocess.channel_order == "RGB" && m.preprocess.source_layout == "NCHW");
  CHECK(m.preprocess.scale == 1.0 / 255);
  CHECK((m.preprocess.mean == std::vector<double>{0.0, 0.0}));
  CHECK((m.preprocess.std == std::vector<double>{1.0, 1.0}));
  m = model_from_json(graph(R"({"mean": 0.5, "std": [0.25], "channel_order": "BGR"})"), params());
  CHECK((m.preprocess.mean == std::vector<double>{0.5, 0.5}));
  CHECK((m.preprocess.std == std::vector<double>{0.25, 0.25}));
  CHECK(m.preprocess.channel_order == "BGR");
  CHECK(m.net->info().size() == 2);
}

TEST(the_former_disagreements_are_refused) {
  expect_error(graph(R"({"channel_order": "bgr"})"), ErrorKind::Graph, "channel_order");
  expect_error(graph("{}", R"(, "note": 1)"), ErrorKind::Graph, "'note'");
  expect_error(graph(R"({"mean": [0.1, 0.2, 0.3]})"), ErrorKind::Graph, "3 values for 2");
}

TEST(preprocess_and_graph_errors_name_the_field) {
  expect_error(graph(R"({"std": [1, 0]})"), ErrorKind::Graph, "'std' must be non-zero");
  expect_error(graph(R"({"mean": ["a", "b"]})"), ErrorKind::Graph, "'mean'");
  expect_error(graph(R"({"size": [5, 6]})"), ErrorKind::Graph, "6x5");
  expect_error(graph(R"({"scale": null, "meen": 1})"), ErrorKind::Graph, "'meen'");
  expect_error(graph(R"({"source_layout": "CHW"})"), ErrorKind::Graph, "source_layout");
  expect_error(graph(), ErrorKind::Format, "conv/weight", {});
  auto extra = params();
  extra["relu/slope"] = Tensor(Shape::vec(1), 0.f);
  expect_error(graph(), ErrorKind::Format, "relu/slope", extra);
  expect_error(graph(), ErrorKind::Shape, "(3, 2, 3, 3)",
               {{"conv/weight", Tensor(Shape::nchw(3, 2, 1, 1), 0.f)}});
  expect_error("{\"format\": ", ErrorKind::Format, "not valid JSON");
  expect_error(replaced(graph(), "\"version\": 1", "\"version\": 2"), ErrorKind::Graph, "version");
  expect_error(replaced(graph(), "[2, 6, 5]", "[2, 6]"), ErrorKind::Shape, "input 'shape'");
}

PYDECONV_TEST_MAIN()
