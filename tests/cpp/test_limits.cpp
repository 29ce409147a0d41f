// Resource limits (pydeconv/limits.hpp): every reader checks a file's declarations against them
// before allocating, names the field and the limit, and follows set_limits.
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "check.hpp"
#include "format/npz.hpp"
#include "pydeconv/error.hpp"
#include "pydeconv/image.hpp"
#include "pydeconv/limits.hpp"
#include "pydeconv/model.hpp"

using namespace pydeconv;

namespace {

// Restores the limits in force when a test ends, whatever it changed.
struct Saved {
  Limits old = limits();
  ~Saved() { set_limits(old); }
};

std::string graph(const std::string& shape, const std::string& pre = "{}") {
  return R"({"format": "pydeconv", "version": 1, "input": {"name": "input", "shape": )" + shape +
         R"(}, "preprocess": )" + pre + R"(, "layers": [
      {"name": "conv", "kind": "conv2d", "inputs": ["input"], "params": {"weight": [3, 2, 3, 3]}},
      {"name": "pool", "kind": "max_pool2d", "inputs": ["conv"], "attrs": {"kernel_size": [2, 2]}}]})";
}

std::map<std::string, Tensor> params() {
  return {{"conv/weight", Tensor(Shape::nchw(3, 2, 3, 3), 0.5f)}};
}

// The error a call throws (kind and message); fails the test when it throws none.
template <typename F>
Error error_of(F fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  check::fail_at(__FILE__, __LINE__, "no error");
}

bool has(const Error& e, const std::string& needle) {
  return std::string(e.what()).find(needle) != std::string::npos;
}

uint32_t crc32_bitwise(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

void put(std::string& s, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}

std::string npy(const std::string& descr, const std::string& shape, const std::string& payload) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  put(out, header.size(), 2);
  return out + header + payload;
}

// A stored (method 0) zip of the given members, as np.savez writes them.
std::string zip(const std::vector<std::pair<std::string, std::string>>& members) {
  std::string body, central;
  for (const auto& [name, data] : members) {
    std::string local;
    put(local, 0x04034b50, 4);
    put(local, 20, 2), put(local, 0, 2), put(local, 0, 2), put(local, 0, 4);
    put(local, crc32_bitwise(data), 4), put(local, data.size(), 4), put(local, data.size(), 4);
    put(local, name.size(), 2), put(local, 0, 2);
    std::string c;
    put(c, 0x02014b50, 4);
    put(c, 20, 2), put(c, 20, 2), put(c, 0, 2), put(c, 0, 2), put(c, 0, 4);
    put(c, crc32_bitwise(data), 4), put(c, data.size(), 4), put(c, data.size(), 4);
    put(c, name.size(), 2), put(c, 0, 2), put(c, 0, 2), put(c, 0, 2), put(c, 0, 2), put(c, 0, 4);
    put(c, body.size(), 4);
    central += c + name;
    body += local + name + data;
  }
  std::string end;
  put(end, 0x06054b50, 4);
  put(end, 0, 2), put(end, 0, 2), put(end, members.size(), 2), put(end, members.size(), 2);
  put(end, central.size(), 4), put(end, body.size(), 4), put(end, 0, 2);
  return body + central + end;
}

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string path = "/tmp/pydeconv_test_limits_" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

}  // namespace

TEST(defaults_and_validation) {
  Saved saved;
  const Limits d;
  CHECK(d.max_tensor_bytes == int64_t(1) << 32 && d.max_dim == 1 << 20);
  CHECK(d.max_input_pixels == 1 << 26 && d.max_image_pixels == 1 << 27);
  CHECK(d.max_threads == 1024 && d.max_json_depth == 64 && d.max_layers == 1 << 16);
  CHECK(d.max_members == 1 << 18 && d.max_graph_bytes == 1 << 26);
  Limits bad = d;
  bad.max_dim = 0;
  Error e = error_of([&] { set_limits(bad); });
  CHECK(e.kind() == ErrorKind::Value && has(e, "max_dim must be positive"));
  CHECK(limits().max_dim == d.max_dim);
  Limits l = d;
  l.max_threads = 7;
  set_limits(l);
  CHECK(limits().max_threads == 7);
}

TEST(input_shape_is_checked_before_anything_is_sized_from_it) {
  Error e = error_of([] { model_from_json(graph("[1000000000, 32, 32]"), params(), "m.npz"); });
  CHECK(e.kind() == ErrorKind::Shape);
  CHECK(has(
      e,
      "m.npz: input 'shape' [1000000000,32,32]: dimension 1000000000 is past max_dim = 1048576"));
  e = error_of([] { model_from_json(graph("[2, 20000, 20000]"), params(), "m.npz"); });
  CHECK(has(e, "20000x20000 pixels is past max_input_pixels = 67108864 (pydeconv.Limits)"));
  e = error_of([] { model_from_json(graph("[4096, 1024, 1024]"), params(), "m.npz"); });
  CHECK(has(e, "input 'shape' [4096,1024,1024] takes more than") && has(e, "max_tensor_bytes"));
  e = error_of(
      [] { model_from_json(graph("[2, 6, 6]", R"({"size": [100000, 100000]})"), params()); });
  CHECK(has(e, "preprocess 'size' [100000,100000]: 100000x100000 pixels is past max_input_pixels"));
}

TEST(every_model_limit_follows_set_limits) {
  Saved saved;
  CHECK(model_from_json(graph("[2, 6, 6]"), params()).net->info().size() == 2);
  const struct {
    int64_t Limits::* field;
    int64_t value;
    const char* needle;
  } cases[] = {
      {&Limits::max_layers, 1, "graph 'layers' has 2 layers, past max_layers = 1"},
      {&Limits::max_graph_bytes, 50, "the graph text is"},
      {&Limits::max_dim, 5, "input 'shape' [2,6,6]: dimension 6 is past max_dim = 5"},
      {&Limits::max_input_pixels, 35, "6x6 pixels is past max_input_pixels = 35"},
      {&Limits::max_tensor_bytes, 200, "the parameters take more than 200 bytes"},
      // input 288 + conv 192 bytes fit; the pool's 48 more do not.
      {&Limits::max_tensor_bytes, 527, "layer 'pool' (max_pool2d): output shape"},
      {&Limits::max_json_depth, 3, "nesting deeper than max_json_depth = 3"},
  };
  for (const auto& c : cases) {
    Limits l = saved.old;
    l.*(c.field) = c.value;
    set_limits(l);
    Error e = error_of([] { model_from_json(graph("[2, 6, 6]"), params(), "m.npz"); });
    if (!has(e, c.needle))
      check::fail_at(__FILE__, __LINE__, std::string(e.what()) + " lacks " + c.needle);
    set_limits(saved.old);
  }
}

TEST(npy_declarations_are_checked_before_their_bytes) {
  const std::string huge = npy("<f4", "(250000000000,)", std::string(16, '\0'));
  Error e = error_of([&] {
    parse_npy(reinterpret_cast<const unsigned char*>(huge.data()), huge.size(),
              "m.npz: member 'w.npy'");
  });
  CHECK(e.kind() == ErrorKind::Format);
  CHECK(
      has(e, "m.npz: member 'w.npy': declares 1000000000000 bytes of data, past max_tensor_bytes"));
}

TEST(archive_member_count_and_declared_sizes_are_limited) {
  Saved saved;
  const std::string a = zip({{"a.npy", npy("<f4", "(2,)", std::string(8, '\0'))},
                             {"b.npy", npy("<f4", "(2,)", std::string(8, '\0'))}});
  auto read = [&] {
    return read_npz_bytes(reinterpret_cast<const unsigned char*>(a.data()), a.size(), "m.npz");
  };
  CHECK(read().size() == 2);
  Limits l = saved.old;
  l.max_members = 1;
  set_limits(l);
  CHECK(has(error_of(read), "m.npz: the archive has 2 members, past max_members = 1"));
  l = saved.old;
  l.max_tensor_bytes = 100;
  l.max_graph_bytes = 100;
  set_limits(l);
  CHECK(has(error_of(read), "the members declare more than 200 bytes uncompressed"));
}

TEST(an_empty_parameter_is_refused_cleanly) {
  // Its data pointer is null: memcpy must not see it (a UBSan report before issue 13).
  const std::string text = graph("[2, 6, 6]");
  const std::string path =
      write_file("empty.npz",
                 zip({{"__graph__.npy", npy("|u1", "(" + std::to_string(text.size()) + ",)", text)},
                      {"conv/weight.npy", npy("<f4", "(0,)", "")}}));
  Error e = error_of([&] { load_model(path); });
  CHECK(e.kind() == ErrorKind::Shape && has(e, "parameter 'conv/weight' has shape (0,)"));
  std::remove(path.c_str());
}

TEST(ppm_pixels_are_checked_before_the_pixels_are_read) {
  Saved saved;
  const std::string path = write_file("big.ppm", "P6\n60000 60000\n255\n" + std::string(12, '\0'));
  Error e = error_of([&] { read_ppm(path); });
  CHECK(e.kind() == ErrorKind::Format);
  CHECK(has(e, "PPM declares 60000x60000 pixels, past max_image_pixels = 134217728"));
  const std::string small = write_file("small.ppm", "P5\n4 3\n255\n" + std::string(12, '\0'));
  CHECK(read_ppm(small).pixels.size() == 12);
  Limits l = saved.old;
  l.max_image_pixels = 11;
  set_limits(l);
  CHECK(has(error_of([&] { read_ppm(small); }), "4x3 pixels, past max_image_pixels = 11"));
  std::remove(path.c_str());
  std::remove(small.c_str());
}

PYDECONV_TEST_MAIN()
