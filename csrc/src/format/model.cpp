// Model files: the one definition of the model format (docs/FORMAT.md). Python builds and loads
// every model through model_from_json / load_model (the bindings), so this file decides what a
// valid graph is, for C++ applications and Python alike.
#include "pydeconv/model.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>

#include "format/json.hpp"
#include "format/npz.hpp"
#include "pydeconv/limits.hpp"

namespace pydeconv {
namespace {

// Errors start with the file's name (when there is one) and name the layer and field.
struct Where {
  std::string label;
  [[noreturn]] void fail(const std::string& msg, ErrorKind kind = ErrorKind::Graph) const {
    pydeconv::fail(kind, label.empty() ? msg : label + ": " + msg);
  }
};

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// A JSON value as it appears in the file, shortened for messages.
std::string shown(const Json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

std::string tuple_str(const std::vector<int64_t>& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + (d.size() == 1 ? ",)" : ")");
}

// NumPy's name for a stored descr ("<i4" -> "int32"), for messages.
std::string dtype_name(const std::string& descr) {
  if (descr.size() < 3) return descr;
  const std::string bits = std::to_string(std::atoi(descr.c_str() + 2) * 8);
  switch (descr[1]) {
    case 'f': return "float" + bits;
    case 'i': return "int" + bits;
    case 'u': return "uint" + bits;
    case 'b': return "bool";
    case 'c': return "complex" + bits;
    default: return descr;
  }
}

// Every member of `obj` must be one of `known`: a misspelt field is refused, never ignored.
void only_fields(const Json& obj, const std::set<std::string>& known, const std::string& what,
                 const Where& w) {
  std::string unknown, all;
  for (const auto& kv : obj.as_object())
    if (!known.count(kv.first)) unknown += (unknown.empty() ? "" : ", ") + quoted(kv.first);
  if (unknown.empty()) return;
  for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
  w.fail(what + ": unknown field(s) " + unknown + " (known: " + all + ")");
}

bool is_count(const Json& v, int64_t min) {
  return v.is_number() && v.is_integer() && v.as_int() >= min;
}

std::vector<int64_t> shape_of(const Json& v, int64_t min) {
  std::vector<int64_t> out;
  if (!v.is_array()) return {-1};
  for (const auto& d : v.as_array()) {
    if (!is_count(d, min)) return {-1};
    out.push_back(d.as_int());
  }
  return out;
}

Shape param_shape(const std::vector<int64_t>& d, const std::string& key, const Where& w) {
  if (d.size() == 1) return Shape::vec(d[0]);
  if (d.size() == 2) return Shape::nc(d[0], d[1]);
  if (d.size() == 4) return Shape::nchw(d[0], d[1], d[2], d[3]);
  w.fail("parameter '" + key + "' has " + std::to_string(d.size()) +
             " dimensions; parameters have 1, 2 or 4",
         ErrorKind::Shape);
}

Tensor to_float_tensor(const NpyArray& a, const Where& w) {
  if (a.dtype != "<f4")
    w.fail("parameter '" + a.name + "' is stored as " + dtype_name(a.dtype) + " ('" + a.dtype +
               "'); model files hold float32 ('<f4')",
           ErrorKind::Shape);
  const int64_t max_dim = limits().max_dim;
  for (int64_t d : a.shape)
    if (d > max_dim)
      w.fail("parameter '" + a.name + "' has shape " + tuple_str(a.shape) + ": dimension " +
                 std::to_string(d) + " is past " + limit_str("max_dim", max_dim),
             ErrorKind::Shape);
  Tensor t(param_shape(a.shape, a.name, w), 0.f);  // mapped when large: see Tensor
  // An empty array's data() may be null, which memcpy must not receive even for 0 bytes.
  if (t.numel() > 0)
    std::memcpy(t.data(), a.bytes.data(), static_cast<size_t>(t.numel()) * sizeof(float));
  return t;
}

// An attribute: a number, a bool (0/1) or a list of those.
std::vector<double> attr_values(const Json& v, const std::string& where, const Where& w) {
  std::vector<double> out;
  auto one = [&](const Json& x) {
    if (x.is_bool())
      out.push_back(x.as_bool() ? 1.0 : 0.0);
    else if (x.is_number())
      out.push_back(x.as_number());
    else
      w.fail(where + " must be a number, a bool or a list of numbers, got " + shown(v));
  };
  if (v.is_array())
    for (const auto& x : v.as_array()) one(x);
  else
    one(v);
  return out;
}

// A member that must be an object when present; nullptr when absent.
const Json* object_field(const Json& obj, const std::string& key, const std::string& what,
                         const Where& w) {
  const Json* v = obj.find(key);
  if (v && !v->is_object()) w.fail(what + " must be an object, got " + shown(*v));
  return v;
}

LayerSpec layer_from_json(const Json& lj, size_t index, std::map<std::string, Tensor>& params,
                          std::set<std::string>& used, const Where& w) {
  const std::string at = "layer #" + std::to_string(index);
  if (!lj.is_object()) w.fail(at + " must be an object");
  for (const char* key : {"name", "kind"}) {
    const Json* v = lj.find(key);
    if (!v || !v->is_string()) w.fail(at + ": field '" + key + "' is missing or not a string");
  }
  LayerSpec ls;
  ls.name = lj.at("name").as_string();
  ls.kind = lj.at("kind").as_string();
  const std::string where = "layer '" + ls.name + "'";
  only_fields(lj, {"name", "kind", "inputs", "attrs", "params", "aliases"}, where, w);
  const Json* inputs = lj.find("inputs");
  if (!inputs || !inputs->is_array()) w.fail(where + ": 'inputs' must be a list of names");
  for (const auto& i : inputs->as_array()) {
    if (!i.is_string()) w.fail(where + ": 'inputs' must be a list of names");
    ls.inputs.push_back(i.as_string());
  }
  if (const Json* attrs = object_field(lj, "attrs", where + ": 'attrs'", w))
    for (const auto& kv : attrs->as_object())
      ls.attrs[kv.first] = attr_values(kv.second, where + ": attribute '" + kv.first + "'", w);
  if (const Json* ps = object_field(lj, "params", where + ": 'params'", w))
    for (const auto& kv : ps->as_object()) {
      const std::string key = ls.name + "/" + kv.first;
      const std::vector<int64_t> declared = shape_of(kv.second, 0);
      if (declared == std::vector<int64_t>{-1})
        w.fail(where + ": parameter '" + kv.first + "' shape must be a list of integers, got " +
               shown(kv.second));
      auto it = params.find(key);
      if (it == params.end())
        w.fail("parameter '" + key + "' is declared but not stored", ErrorKind::Format);
      if (it->second.shape().dims() != declared)
        w.fail("parameter '" + key + "' has shape " + tuple_str(it->second.shape().dims()) +
                   ", declared " + tuple_str(declared),
               ErrorKind::Shape);
      ls.params[kv.first] = it->second;
      used.insert(key);
    }
  return ls;
}

// mean or std: one value for every channel, or one per channel.
std::vector<double> per_channel(const Json* v, double dflt, int64_t channels,
                                const std::string& key, const Where& w) {
  if (!v || v->is_null()) return std::vector<double>(static_cast<size_t>(channels), dflt);
  std::vector<double> out;
  const bool list = v->is_array();
  for (const Json& x : list ? v->as_array() : Json::Array{*v}) {
    if (!x.is_number())
      w.fail("preprocess '" + key + "' must be a number or a list of numbers, got " + shown(*v));
    out.push_back(x.as_number());
  }
  if (out.size() == 1) out.assign(static_cast<size_t>(channels), out[0]);
  if (static_cast<int64_t>(out.size()) != channels)
    w.fail("preprocess '" + key + "' has " + std::to_string(out.size()) + " values for " +
           std::to_string(channels) + " input channels (give " + std::to_string(channels) +
           ", or one for every channel)");
  return out;
}

// A layer's optional "aliases": other names it answers to (the Net checks they clash with none).
void layer_aliases(const Json& lj, GraphSpec& spec, const Where& w) {
  const Json* aliases = lj.find("aliases");
  if (!aliases) return;
  const std::string& name = spec.layers.back().name;
  const std::string what = "layer '" + name + "': 'aliases' must be a list of non-empty strings";
  if (!aliases->is_array()) w.fail(what + ", got " + shown(*aliases));
  for (const auto& a : aliases->as_array()) {
    if (!a.is_string() || a.as_string().empty()) w.fail(what + ", got " + shown(a));
    if (!spec.aliases.emplace(a.as_string(), name).second)
      w.fail("layer '" + name + "': alias '" + a.as_string() + "' is used twice", ErrorKind::Graph);
  }
}

// Height x width (the input's, or preprocess 'size') against the limits, before anything is
// sized from them.
void check_pixels(const std::string& what, int64_t h, int64_t wd, const Where& w) {
  const Limits lim = limits();
  for (int64_t d : {h, wd})
    if (d > lim.max_dim)
      w.fail(what + ": dimension " + std::to_string(d) + " is past " +
                 limit_str("max_dim", lim.max_dim),
             ErrorKind::Shape);
  if (h > lim.max_input_pixels / wd)  // h * wd, without overflow whatever the limits are
    w.fail(what + ": " + std::to_string(h) + "x" + std::to_string(wd) + " pixels is past " +
               limit_str("max_input_pixels", lim.max_input_pixels),
           ErrorKind::Shape);
}

const Json& checked_input(const Json& g, const Where& w) {
  const Json* in = g.is_object() ? g.find("input") : nullptr;
  if (!in || !in->is_object() || !in->find("name") || !in->at("name").is_string())
    w.fail("graph 'input' must be {\"name\": ..., \"shape\": [C, H, W]}");
  only_fields(*in, {"name", "shape"}, "graph 'input'", w);
  const Json* shape = in->find("shape");
  if (!shape || shape_of(*shape, 1).size() != 3)
    w.fail("input 'shape' must be three positive integers [C, H, W], got " +
               (shape ? shown(*shape) : std::string("nothing")),
           ErrorKind::Shape);
  const std::vector<int64_t> chw = shape_of(*shape, 1);
  const std::string what = "input 'shape' " + shown(*shape);
  const Limits lim = limits();
  if (chw[0] > lim.max_dim)
    w.fail(what + ": dimension " + std::to_string(chw[0]) + " is past " +
               limit_str("max_dim", lim.max_dim),
           ErrorKind::Shape);
  check_pixels(what, chw[1], chw[2], w);
  if (chw[0] > lim.max_tensor_bytes / int64_t(sizeof(float)) / (chw[1] * chw[2]))
    w.fail(what + " takes more than " + std::to_string(lim.max_tensor_bytes) + " bytes, past " +
               limit_str("max_tensor_bytes", lim.max_tensor_bytes),
           ErrorKind::Shape);
  return *in;
}

// Every parameter's dimensions and their total size against the limits (the .npz reader has
// checked each member's declaration already; arrays from Python arrive here first).
void check_params(const std::map<std::string, Tensor>& params, const Where& w) {
  const Limits lim = limits();
  int64_t total = 0;
  for (const auto& kv : params) {
    for (int64_t d : kv.second.shape().dims())
      if (d > lim.max_dim)
        w.fail("parameter '" + kv.first + "' has shape " + tuple_str(kv.second.shape().dims()) +
                   ": dimension " + std::to_string(d) + " is past " +
                   limit_str("max_dim", lim.max_dim),
               ErrorKind::Shape);
    total += kv.second.numel() * int64_t(sizeof(float));
    if (total > lim.max_tensor_bytes)
      w.fail("the parameters take more than " + std::to_string(lim.max_tensor_bytes) +
                 " bytes (at '" + kv.first + "'), past " +
                 limit_str("max_tensor_bytes", lim.max_tensor_bytes),
             ErrorKind::Shape);
  }
}

GraphSpec graph_spec(const Json& g, std::map<std::string, Tensor> params, const Where& w) {
  if (!g.is_object()) w.fail("the graph must be a JSON object");
  only_fields(g,
              {"format", "version", "name", "input", "preprocess", "labels", "layers", "outputs",
               "metadata"},
              "the graph", w);
  // 'metadata': an object kept verbatim for tools (a Darknet import's [yolo] anchors); the engine
  // never reads it.
  object_field(g, "metadata", "graph 'metadata'", w);
  const Json* format = g.find("format");
  if (!format || !format->is_string() || format->as_string() != "pydeconv")
    w.fail("graph 'format' must be 'pydeconv'");
  const Json* version = g.find("version");
  if (!version || !version->is_number() || !version->is_integer() || version->as_int() != 1)
    w.fail("unsupported format version " + (version ? shown(*version) : "(none)") +
           " (this pydeconv reads 1)");
  if (const Json* name = g.find("name"); name && !name->is_string())
    w.fail("graph 'name' must be a string, got " + shown(*name));
  GraphSpec spec;
  const Json& in = checked_input(g, w);
  spec.input_name = in.at("name").as_string();
  const std::vector<int64_t> chw = shape_of(in.at("shape"), 1);
  spec.c = chw[0];
  spec.h = chw[1];
  spec.w = chw[2];
  const Json* layers = g.find("layers");
  if (!layers || !layers->is_array() || layers->size() == 0)
    w.fail("graph 'layers' must be a non-empty list");
  const int64_t max_layers = limits().max_layers;
  if (static_cast<int64_t>(layers->size()) > max_layers)
    w.fail("graph 'layers' has " + std::to_string(layers->size()) + " layers, past " +
           limit_str("max_layers", max_layers));
  std::set<std::string> used, names;
  for (size_t i = 0; i < layers->size(); ++i) {
    spec.layers.push_back(layer_from_json(layers->at(i), i, params, used, w));
    names.insert(spec.layers.back().name);
    layer_aliases(layers->at(i), spec, w);
  }
  if (const Json* outs = g.find("outputs")) {
    if (!outs->is_array()) w.fail("graph 'outputs' must be a list of layer names");
    for (const auto& o : outs->as_array()) {
      if (!o.is_string()) w.fail("graph 'outputs' must be a list of layer names");
      if (!names.count(o.as_string()))
        w.fail("graph 'outputs': unknown layer '" + o.as_string() + "'");
      spec.outputs.push_back(o.as_string());
    }
  }
  if (const Json* labels = g.find("labels")) {
    bool ok = labels->is_array();
    for (size_t i = 0; ok && i < labels->size(); ++i) ok = labels->at(i).is_string();
    if (!ok) w.fail("graph 'labels' must be a list of strings");
  }
  std::string extra;
  for (const auto& kv : params)
    if (!used.count(kv.first)) extra += (extra.empty() ? "" : ", ") + quoted(kv.first);
  if (!extra.empty())
    w.fail("stored arrays not declared by any layer: " + extra, ErrorKind::Format);
  return spec;
}

Preprocess preprocess_spec(const Json& g, const Where& w) {
  const std::vector<int64_t> chw = shape_of(checked_input(g, w).at("shape"), 1);
  Preprocess p;
  p.height = static_cast<int>(chw[1]);
  p.width = static_cast<int>(chw[2]);
  p.channel_order = chw[0] == 1 ? "L" : "RGB";  // a one-channel input reads grey images
  const Json* pre = object_field(g, "preprocess", "graph 'preprocess'", w);
  static const Json kEmpty = Json::object();
  if (!pre) pre = &kEmpty;
  only_fields(*pre, {"size", "channel_order", "scale", "mean", "std", "source_layout"},
              "graph 'preprocess'", w);
  auto given = [&](const char* key) {
    const Json* v = pre->find(key);
    return v && !v->is_null() ? v : nullptr;  // null: the default
  };
  if (const Json* size = given("size")) {
    const std::vector<int64_t> hw = shape_of(*size, 1);
    if (hw.size() != 2)
      w.fail("preprocess 'size' must be two positive integers [H, W], got " + shown(*size));
    check_pixels("preprocess 'size' " + shown(*size), hw[0], hw[1], w);
    if (hw[0] != chw[1] || hw[1] != chw[2])
      w.fail("preprocess 'size' " + shown(*size) + " differs from the model's input " +
             std::to_string(chw[1]) + "x" + std::to_string(chw[2]));
  }
  if (const Json* order = given("channel_order")) {
    const std::string v = order->is_string() ? order->as_string() : "";
    if (v != "RGB" && v != "BGR" && v != "L")
      w.fail("preprocess 'channel_order' must be 'RGB', 'BGR' or 'L' (upper case), got " +
             shown(*order));
    p.channel_order = v;
  }
  if (const Json* scale = given("scale")) {
    if (!scale->is_number()) w.fail("preprocess 'scale' must be a number, got " + shown(*scale));
    p.scale = scale->as_number();
  }
  p.mean = per_channel(given("mean"), 0.0, chw[0], "mean", w);
  p.std = per_channel(given("std"), 1.0, chw[0], "std", w);
  for (size_t c = 0; c < p.std.size(); ++c)
    if (p.std[c] == 0.0)
      w.fail("preprocess 'std' must be non-zero (channel " + std::to_string(c) + " is 0)");
  if (const Json* layout = given("source_layout")) {
    const std::string v = layout->is_string() ? layout->as_string() : "";
    if (v != "NCHW" && v != "NHWC")
      w.fail("preprocess 'source_layout' must be 'NCHW' or 'NHWC', got " + shown(*layout));
    p.source_layout = v;
  }
  return p;
}

Model build(const std::string& text, std::map<std::string, Tensor> params, const Where& w) {
  Model m;
  const int64_t max_graph = limits().max_graph_bytes;
  if (static_cast<int64_t>(text.size()) > max_graph)
    w.fail("the graph text is " + std::to_string(text.size()) + " bytes, past " +
               limit_str("max_graph_bytes", max_graph),
           ErrorKind::Format);
  check_params(params, w);
  Json graph;
  try {
    graph = Json::parse(text);
  } catch (const Error& e) {
    w.fail(std::string("'__graph__' is not valid JSON (") + e.what() + ")", ErrorKind::Format);
  }
  GraphSpec spec = graph_spec(graph, std::move(params), w);
  m.preprocess = preprocess_spec(graph, w);
  if (const Json* labels = graph.find("labels"))
    for (const auto& l : labels->as_array()) m.labels.push_back(l.as_string());
  m.graph_json = text;
  try {
    m.net = std::make_unique<Net>(std::move(spec));
  } catch (const Error& e) {
    w.fail(e.what(), e.kind());  // the layer's own check, with the file's name in front
  }
  return m;
}

}  // namespace

Model model_from_json(const std::string& graph_json, std::map<std::string, Tensor> params,
                      const std::string& label) {
  return build(graph_json, std::move(params), Where{label});
}

Model load_model(const std::string& path) {
  const Where w{path};
  std::vector<NpyArray> arrays = read_npz(path);
  std::map<std::string, Tensor> params;
  std::string text;
  bool have_graph = false;
  for (const auto& a : arrays) {
    if (a.name == "__graph__") {
      if (a.dtype != "|u1" || a.shape.size() != 1)
        w.fail("'__graph__' must be a 1-D uint8 array", ErrorKind::Format);
      text.assign(a.bytes.begin(), a.bytes.end());
      have_graph = true;
    } else {
      params[a.name] = to_float_tensor(a, w);
    }
  }
  if (!have_graph)
    w.fail("missing the '__graph__' member (not a pydeconv model)", ErrorKind::Format);
  return build(text, std::move(params), w);
}

}  // namespace pydeconv
