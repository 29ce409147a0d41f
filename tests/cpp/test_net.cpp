// The graph executor from C++: build, forward, switches, projections, adjoints, errors.
#include <algorithm>
#include <cmath>
#include <random>

#include "check.hpp"
#include "pydeconv/net.hpp"

using namespace pydeconv;

namespace {

Tensor random_tensor(const Shape& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  Tensor t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}

LayerSpec conv(const std::string& name, const std::string& in, int64_t oc, int64_t ic, int64_t k,
               unsigned seed) {
  LayerSpec s;
  s.name = name;
  s.kind = "conv2d";
  s.inputs = {in};
  s.attrs["padding"] = {double(k / 2)};
  s.params["weight"] = random_tensor(Shape::nchw(oc, ic, k, k), seed);
  return s;
}

LayerSpec simple(const std::string& name, const std::string& kind, std::vector<std::string> in) {
  LayerSpec s;
  s.name = name;
  s.kind = kind;
  s.inputs = std::move(in);
  return s;
}

GraphSpec small_graph() {
  GraphSpec g;
  g.c = 2;
  g.h = 9;
  g.w = 9;
  g.layers.push_back(conv("conv1", "input", 4, 2, 3, 1));
  g.layers.push_back(simple("relu1", "relu", {"conv1"}));
  LayerSpec pool = simple("pool1", "max_pool2d", {"relu1"});
  pool.attrs["kernel_size"] = {3};
  pool.attrs["stride"] = {2};
  g.layers.push_back(pool);
  g.layers.push_back(conv("conv2", "pool1", 3, 4, 3, 2));
  return g;
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += double(a.data()[i]) * b.data()[i];
  return s;
}

}  // namespace

TEST(forward_shapes_and_receptive_fields) {
  Net net(small_graph());
  Ctx ctx;
  Trace t = net.forward(ctx, random_tensor(Shape::nchw(2, 2, 9, 9), 3));
  CHECK(net.activation(t, "pool1").shape() == Shape::nchw(2, 4, 4, 4));
  CHECK(net.activation(t, "conv2").shape() == Shape::nchw(2, 3, 4, 4));
  const LayerInfo& li = net.info()[3];
  CHECK(li.rf_size_h == 3 + 2 + 2 * 2);  // conv3 -> pool3/2 -> conv3 at stride 2
  CHECK(li.rf_stride_h == 2);
  CHECK(li.rf_start_h == -1 - 2);
}

TEST(switches_point_at_the_window_maximum) {
  Net net(small_graph());
  Ctx ctx;
  Trace t = net.forward(ctx, random_tensor(Shape::nchw(1, 2, 9, 9), 4));
  const Tensor& in = net.activation(t, "relu1");
  const Tensor& out = net.activation(t, "pool1");
  const IndexTensor& sw = net.switches(t, "pool1");
  for (int64_t c = 0; c < 4; ++c)
    for (int64_t i = 0; i < 16; ++i) CHECK(in.plane(0, c)[sw.plane(0, c)[i]] == out.plane(0, c)[i]);
}

TEST(backprop_projection_is_the_adjoint_of_a_linear_net) {
  GraphSpec g;
  g.c = 3;
  g.h = 7;
  g.w = 6;
  g.layers.push_back(conv("conv1", "input", 5, 3, 3, 7));
  Net net(std::move(g));
  for (int threads : {1, 2}) {
    Ctx ctx;
    ctx.threads = threads;
    Tensor x = random_tensor(Shape::nchw(1, 3, 7, 6), 8);
    Tensor y = random_tensor(Shape::nchw(1, 5, 7, 6), 9);
    Trace t = net.forward(ctx, x);
    Tensor aty = net.project(ctx, t, "conv1", y, Rule::Backprop);
    CHECK_NEAR(dot(net.activation(t, "conv1"), y), dot(x, aty), 1e-3);
  }
}

TEST(deconvnet_start_at_max_keeps_one_value) {
  Net net(small_graph());
  Ctx ctx;
  Trace t = net.forward(ctx, random_tensor(Shape::nchw(1, 2, 9, 9), 5));
  Tensor s = net.start_signal(t, "conv2", {0, 2}, At{});
  CHECK(s.shape() == Shape::nchw(2, 3, 4, 4));
  int nonzero = 0;
  for (int64_t i = 0; i < s.numel(); ++i) nonzero += s.data()[i] != 0.f;
  CHECK(nonzero == 2);
  Tensor p = net.project(ctx, t, "conv2", s, Rule::Deconvnet);
  CHECK(p.shape() == Shape::nchw(2, 2, 9, 9));
  // Keep::Minimal gives the same deconvnet projection.
  Trace m = net.forward(ctx, random_tensor(Shape::nchw(1, 2, 9, 9), 5), "", Keep::Minimal);
  Tensor q = net.project(ctx, m, "conv2", s, Rule::Deconvnet);
  for (int64_t i = 0; i < p.numel(); ++i) CHECK(p.data()[i] == q.data()[i]);
}

// An input built in the net's buffer pool runs like any other tensor, and once its trace is gone
// the next input_buffer of that shape reuses the block (no fresh pages per pass).
TEST(input_buffer_comes_from_the_pool) {
  Net net(small_graph());
  Ctx ctx;
  const Tensor x = random_tensor(Shape::nchw(1, 2, 9, 9), 7);
  const Trace plain = net.forward(ctx, x);
  const float* first = nullptr;
  for (int pass = 0; pass < 2; ++pass) {
    Tensor in = net.input_buffer(x.shape());
    CHECK(in.shape() == x.shape());
    std::copy(x.data(), x.data() + x.numel(), in.data());
    if (pass == 0)
      first = in.data();
    else
      CHECK(in.data() == first);
    const Trace t = net.forward(ctx, in, "", Keep::Minimal);
    const Tensor& a = net.activation(plain, "conv2");
    const Tensor& b = net.activation(t, "conv2");
    for (int64_t i = 0; i < a.numel(); ++i) CHECK(a.data()[i] == b.data()[i]);
  }
}

TEST(graph_errors_name_the_layer) {
  auto expect_error = [](GraphSpec g, ErrorKind kind, const std::string& needle) {
    try {
      Net net(std::move(g));
    } catch (const Error& e) {
      CHECK(e.kind() == kind);
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
      return;
    }
    CHECK(!"no error");
  };
  GraphSpec g = small_graph();
  g.layers[1].inputs = {"nowhere"};
  expect_error(g, ErrorKind::Graph, "nowhere");
  g = small_graph();
  g.layers[0].inputs = {"conv2"};  // conv1 <- conv2 <- pool1 <- relu1 <- conv1
  expect_error(g, ErrorKind::Graph, "cycle");
  g = small_graph();
  g.layers[1].kind = "no_such_kind";  // (was "gelu", a kind since issue 14)
  expect_error(g, ErrorKind::Graph, "no_such_kind");
  g = small_graph();
  g.layers[3].params["weight"] = random_tensor(Shape::nchw(3, 5, 3, 3), 1);
  expect_error(g, ErrorKind::Graph, "conv2");
}

TEST(runtime_errors) {
  Net net(small_graph());
  Ctx ctx;
  CHECK_THROWS(net.forward(ctx, random_tensor(Shape::nchw(1, 3, 9, 9), 1)));
  Trace t = net.forward(ctx, random_tensor(Shape::nchw(1, 2, 9, 9), 1));
  CHECK_THROWS(net.start_signal(t, "conv2", {3}, At{}));
  CHECK_THROWS(net.start_signal(t, "conv9", {0}, At{}));
  CHECK_THROWS(net.switches(t, "conv1"));
}

TEST(start_arguments_are_checked_with_their_kind) {
  Net net(small_graph());
  Ctx ctx;
  Trace t = net.forward(ctx, random_tensor(Shape::nchw(1, 2, 9, 9), 1));
  auto kind_of = [&](auto&& call) {
    try {
      call();
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::Value;  // no error: fails the CHECKs below
  };
  At pos;
  pos.kind = At::Position;
  pos.y = 4;  // conv2's map is 4x4
  CHECK(kind_of([&] { net.start_signal(t, "conv2", {3}, At{}); }) == ErrorKind::Range);
  CHECK(kind_of([&] { net.start_signal(t, "conv2", {-1}, At{}); }) == ErrorKind::Range);
  CHECK(kind_of([&] { net.start_signal(t, "conv2", {}, At{}); }) == ErrorKind::Range);
  CHECK(kind_of([&] { net.start_signal(t, "conv2", {0}, pos); }) == ErrorKind::Range);
  CHECK(kind_of([&] { net.positions(t, "conv2", {0}, pos); }) == ErrorKind::Range);
  CHECK(kind_of([&] { net.positions(t, "conv9", {0}, At{}); }) == ErrorKind::NotFound);
  Net other(small_graph());
  CHECK(kind_of([&] { other.start_signal(t, "conv2", {0}, At{}); }) == ErrorKind::Value);
  CHECK(kind_of([&] {
          net.project(ctx, t, "conv2", Tensor(Shape::nchw(1, 3, 4, 3), 0.f), Rule::Deconvnet);
        }) == ErrorKind::Shape);
}

TEST(positions_are_where_the_start_signal_sits) {
  Net net(small_graph());
  Ctx ctx;
  Trace t = net.forward(ctx, random_tensor(Shape::nchw(2, 2, 9, 9), 5));
  const std::vector<int64_t> channels{2, 0};
  for (At::Kind kind : {At::Max, At::Position, At::Map}) {
    At at;
    at.kind = kind;
    at.y = 1;
    at.x = 3;
    const std::vector<Position> pos = net.positions(t, "conv2", channels, at);
    const Tensor start = net.start_signal(t, "conv2", channels, at);
    CHECK(pos.size() == 4);
    for (int64_t b = 0; b < 4; ++b) {
      const Position& p = pos[static_cast<size_t>(b)];
      const float* plane = start.plane(b, channels[static_cast<size_t>(b % 2)]);
      if (kind == At::Map) {
        CHECK(p.y == -1 && p.x == -1);
        continue;
      }
      if (kind == At::Position) CHECK(p.y == 1 && p.x == 3);
      for (int64_t i = 0; i < 16; ++i)  // the only non-zero value of the plane (4x4) is there
        if (i != p.y * 4 + p.x) CHECK(plane[i] == 0.f);
      const float* act =
          net.activation(t, "conv2").plane(b / 2, channels[static_cast<size_t>(b % 2)]);
      CHECK(plane[p.y * 4 + p.x] == act[p.y * 4 + p.x]);
      if (kind == At::Max)
        for (int64_t i = 0; i < 16; ++i) CHECK(act[i] <= act[p.y * 4 + p.x]);
    }
  }
}

// A projection that stops at a layer (ProjectOptions::to) returns the signal at its output;
// continuing from there gives the full projection, bit for bit here; chunks give the same bits.
TEST(projection_stops_at_a_layer) {
  Net net(small_graph());
  Ctx ctx;
  Trace t = net.forward(ctx, random_tensor(Shape::nchw(2, 2, 9, 9), 5));
  const std::vector<int64_t> channels{2, 0, 1};
  for (Rule rule : {Rule::Deconvnet, Rule::Guided, Rule::Backprop}) {
    ProjectOptions stop;
    stop.to = "relu1";
    const Tensor mid = net.project_channels(ctx, t, "conv2", channels, At{}, rule, stop);
    CHECK(mid.shape() == Shape::nchw(6, 4, 9, 9));
    const Tensor full = net.project_channels(ctx, t, "conv2", channels, At{}, rule);
    const Tensor again = net.project(ctx, t, "relu1", mid, rule);
    CHECK(again.shape() == full.shape());
    for (int64_t i = 0; i < full.numel(); ++i) CHECK(again.data()[i] == full.data()[i]);
    // The same from an explicit start signal, and in chunks of one channel.
    const Tensor start = net.start_signal(t, "conv2", channels, At{});
    const Tensor mid2 = net.project(ctx, t, "conv2", start, rule, "relu1");
    stop.max_memory = 1;
    const Tensor mid3 = net.project_channels(ctx, t, "conv2", channels, At{}, rule, stop);
    for (int64_t i = 0; i < mid.numel(); ++i) {
      CHECK(mid2.data()[i] == mid.data()[i]);
      CHECK(mid3.data()[i] == mid.data()[i]);
    }
    // Stopping where it starts gives the start signal.
    const Tensor same = net.project(ctx, t, "conv2", start, rule, "conv2");
    for (int64_t i = 0; i < start.numel(); ++i) CHECK(same.data()[i] == start.data()[i]);
  }
  CHECK(net.projection_bytes_per_sample("conv2", "pool1") <
        net.projection_bytes_per_sample("conv2"));
  auto kind_of = [&](auto&& call) {
    try {
      call();
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::Value;
  };
  ProjectOptions up;
  up.to = "conv2";  // runs after relu1
  CHECK(kind_of([&] { net.project_channels(ctx, t, "relu1", {0}, At{}, Rule::Backprop, up); }) ==
        ErrorKind::Graph);
  up.to = "conv7";
  CHECK(kind_of([&] { net.project_channels(ctx, t, "relu1", {0}, At{}, Rule::Backprop, up); }) ==
        ErrorKind::NotFound);
}

PYDECONV_TEST_MAIN()
