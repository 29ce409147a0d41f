// Loading .npz model files in C++ (no Python): the npz reader, the JSON graph, the preprocessing.
#include "pydeconv/model.hpp"

#include <cmath>
#include <cstring>
#include <set>

#include "pydeconv/npz.hpp"

namespace pydeconv {
namespace {

[[noreturn]] void bad(const std::string& label, const std::string& msg,
                      ErrorKind kind = ErrorKind::Graph) {
  fail(kind, label + ": " + msg);
}

Shape param_shape(const std::vector<int64_t>& d, const std::string& label, const std::string& key) {
  if (d.size() == 1) return Shape::vec(d[0]);
  if (d.size() == 2) return Shape::nc(d[0], d[1]);
  if (d.size() == 4) return Shape::nchw(d[0], d[1], d[2], d[3]);
  bad(label, "parameter '" + key + "' must have 1, 2 or 4 dimensions", ErrorKind::Shape);
}

Tensor to_float_tensor(const NpyArray& a, const std::string& label) {
  if (a.dtype != "<f4")
    bad(label, "parameter '" + a.name + "' must be float32 ('<f4'), got '" + a.dtype + "'",
        ErrorKind::Shape);
  Tensor t(param_shape(a.shape, label, a.name), 0.f);  // mapped when large: see Tensor
  std::memcpy(t.data(), a.bytes.data(), static_cast<size_t>(t.numel()) * sizeof(float));
  return t;
}

std::vector<double> attr_values(const Json& v, const std::string& where) {
  std::vector<double> out;
  auto one = [&](const Json& x) {
    if (x.is_bool()) out.push_back(x.as_bool() ? 1.0 : 0.0);
    else if (x.is_number()) out.push_back(x.as_number());
    else fail(ErrorKind::Graph, where + " must be a number, a bool or a list of numbers");
  };
  if (v.is_array())
    for (const auto& x : v.as_array()) one(x);
  else
    one(v);
  return out;
}

}  // namespace

GraphSpec graph_from_json(const Json& g, std::map<std::string, Tensor> params,
                          const std::string& label) {
  if (!g.is_object()) bad(label, "the graph must be a JSON object");
  if (!g.has("format") || !g.at("format").is_string() || g.at("format").as_string() != "pydeconv")
    bad(label, "graph 'format' must be 'pydeconv'");
  if (!g.has("version") || !g.at("version").is_integer() || g.at("version").as_int() != 1)
    bad(label, "unsupported format version (this pydeconv reads 1)");
  GraphSpec spec;
  const Json& in = g.at("input");
  spec.input_name = in.at("name").as_string();
  const Json& shape = in.at("shape");
  if (!shape.is_array() || shape.size() != 3)
    bad(label, "input 'shape' must be [C, H, W]", ErrorKind::Shape);
  spec.c = shape.at(0).as_int();
  spec.h = shape.at(1).as_int();
  spec.w = shape.at(2).as_int();
  std::set<std::string> used;
  for (const auto& lj : g.at("layers").as_array()) {
    LayerSpec ls;
    ls.name = lj.at("name").as_string();
    ls.kind = lj.at("kind").as_string();
    const std::string where = label + ": layer '" + ls.name + "'";
    for (const auto& i : lj.at("inputs").as_array()) ls.inputs.push_back(i.as_string());
    if (const Json* attrs = lj.find("attrs"))
      for (const auto& kv : attrs->as_object())
        ls.attrs[kv.first] = attr_values(kv.second, where + ": attribute '" + kv.first + "'");
    if (const Json* ps = lj.find("params"))
      for (const auto& kv : ps->as_object()) {
        const std::string key = ls.name + "/" + kv.first;
        auto it = params.find(key);
        if (it == params.end()) bad(label, "parameter '" + key + "' is declared but not stored", ErrorKind::Format);
        std::vector<int64_t> declared;
        for (const auto& d : kv.second.as_array()) declared.push_back(d.as_int());
        if (it->second.shape().dims() != declared)
          bad(label, "parameter '" + key + "' has shape " + it->second.shape().str() +
                         ", declared differently", ErrorKind::Shape);
        ls.params[kv.first] = it->second;
        used.insert(key);
      }
    spec.layers.push_back(std::move(ls));
  }
  for (const auto& kv : params)
    if (!used.count(kv.first))
      bad(label, "stored array '" + kv.first + "' is not declared by any layer", ErrorKind::Format);
  if (const Json* outs = g.find("outputs"))
    for (const auto& o : outs->as_array()) spec.outputs.push_back(o.as_string());
  return spec;
}

Preprocess preprocess_from_json(const Json& g) {
  Preprocess p;
  const Json& shape = g.at("input").at("shape");
  p.height = static_cast<int>(shape.at(1).as_int());
  p.width = static_cast<int>(shape.at(2).as_int());
  const Json* pre = g.find("preprocess");
  if (!pre || pre->is_null()) return p;
  if (const Json* size = pre->find("size"); size && !size->is_null()) {
    p.height = static_cast<int>(size->at(0).as_int());
    p.width = static_cast<int>(size->at(1).as_int());
  }
  if (const Json* v = pre->find("channel_order"); v && !v->is_null()) p.channel_order = v->as_string();
  if (const Json* v = pre->find("scale"); v && !v->is_null()) p.scale = v->as_number();
  if (const Json* v = pre->find("mean"); v && !v->is_null()) p.mean = attr_values(*v, "preprocess 'mean'");
  if (const Json* v = pre->find("std"); v && !v->is_null()) p.std = attr_values(*v, "preprocess 'std'");
  for (double s : p.std)
    if (s == 0.0 || !std::isfinite(s)) fail(ErrorKind::Graph, "preprocess 'std' must be non-zero");
  return p;
}

Model load_model(const std::string& path) {
  std::vector<NpyArray> arrays = read_npz(path);
  std::map<std::string, Tensor> params;
  std::string text;
  bool have_graph = false;
  for (const auto& a : arrays) {
    if (a.name == "__graph__") {
      if (a.dtype != "|u1" || a.shape.size() != 1)
        bad(path, "'__graph__' must be a 1-D uint8 array", ErrorKind::Format);
      text.assign(a.bytes.begin(), a.bytes.end());
      have_graph = true;
    } else {
      params[a.name] = to_float_tensor(a, path);
    }
  }
  if (!have_graph) bad(path, "missing the '__graph__' member (not a pydeconv model)", ErrorKind::Format);
  Model m;
  try {
    m.graph = Json::parse(text);
    GraphSpec spec = graph_from_json(m.graph, std::move(params), path);
    m.preprocess = preprocess_from_json(m.graph);
    if (const Json* labels = m.graph.find("labels"); labels && labels->is_array())
      for (const auto& l : labels->as_array()) m.labels.push_back(l.as_string());
    m.net = std::make_unique<Net>(std::move(spec));
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind(path, 0) == 0) throw;
    throw Error(e.kind(), path + ": " + msg);
  }
  return m;
}

}  // namespace pydeconv
