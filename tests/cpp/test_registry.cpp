// The layer registry from C++: every row is complete, make_layer hands each layer its row's
// capabilities and needs, and an unknown kind is refused with the list of known ones.
// (tests/test_registry.py checks the rest: tests, docs and the schema checks of every row.)
#include <cstring>
#include <set>
#include <string>

#include "check.hpp"
#include "layers/layer.hpp"
#include "pydeconv/error.hpp"

using namespace pydeconv;

TEST(every_row_is_complete) {
  std::set<std::string> names;
  for (const LayerKind& k : layer_kinds()) {
    CHECK(k.name != nullptr && std::strlen(k.name) > 0);
    CHECK(names.insert(k.name).second);  // once
    CHECK(k.make != nullptr);
    CHECK(k.rule != nullptr && std::strlen(k.rule) > 0);
    CHECK(k.reference != nullptr && std::strlen(k.reference) > 0);
    CHECK(k.schema.min_inputs >= 1);
    CHECK(k.schema.max_inputs == 0 || k.schema.max_inputs >= k.schema.min_inputs);
    for (const AttrSchema& a : k.schema.attrs)
      CHECK(a.type == AttrType::Ignored || (a.n_min >= 1 && a.n_min <= a.n_max));
  }
  CHECK(!names.empty());
  // A kind that fuses a following ReLU needs a kind that can be fused.
  bool fuses = false, fusable = false;
  for (const LayerKind& k : layer_kinds()) {
    fuses = fuses || k.caps.fuses_relu;
    fusable = fusable || k.caps.fusable_relu;
  }
  CHECK(!fuses || fusable);
}

TEST(make_layer_hands_each_layer_its_row) {
  for (const LayerKind& k : layer_kinds()) {
    LayerSpec spec;
    spec.name = std::string("a_") + k.name;
    spec.kind = k.name;
    auto layer = make_layer(spec);
    CHECK(layer->kind() == k.name);
    CHECK(&layer->row() == &k);
    const Caps& c = layer->caps();
    CHECK(c.forward_in_place == k.caps.forward_in_place && c.fuses_relu == k.caps.fuses_relu &&
          c.fusable_relu == k.caps.fusable_relu &&
          c.backward_in_place == k.caps.backward_in_place &&
          c.backward_region_only == k.caps.backward_region_only &&
          c.backward_overwrites == k.caps.backward_overwrites);
    const Needs& n = layer->needs();
    CHECK(n.input == k.needs.input && n.output == k.needs.output && n.mask == k.needs.mask &&
          n.switches == k.needs.switches);
  }
}

TEST(unknown_kind_lists_the_known_ones) {
  LayerSpec spec;
  spec.name = "g1";
  spec.kind = "no_such_kind";  // (was "gelu", a kind since issue 14)
  bool threw = false;
  try {
    make_layer(spec);
  } catch (const Error& e) {
    threw = true;
    const std::string msg = e.what();
    CHECK(e.kind() == ErrorKind::Graph);
    CHECK(msg.find("'g1'") != std::string::npos && msg.find("'no_such_kind'") != std::string::npos);
    for (const LayerKind& k : layer_kinds()) CHECK(msg.find(k.name) != std::string::npos);
  }
  CHECK(threw);
}

PYDECONV_TEST_MAIN()
