#include "pydeconv/layer.hpp"

#include <cmath>
#include <set>

namespace pydeconv {

Rule parse_rule(const std::string& name) {
  if (name == "deconvnet") return Rule::Deconvnet;
  if (name == "guided") return Rule::Guided;
  if (name == "backprop") return Rule::Backprop;
  fail(ErrorKind::Value, "unknown rule '" + name + "' (expected deconvnet, guided or backprop)");
}

void Layer::bad(const std::string& what) const {
  fail(ErrorKind::Graph, "layer '" + name() + "' (" + kind() + "): " + what);
}

std::vector<double> Layer::attr(const std::string& key, std::vector<double> dflt) const {
  auto it = spec_.attrs.find(key);
  return it == spec_.attrs.end() ? dflt : it->second;
}

std::vector<int64_t> Layer::ints(const std::string& key, std::vector<int64_t> dflt, size_t n_min,
                                 size_t n_max) const {
  auto it = spec_.attrs.find(key);
  if (it == spec_.attrs.end()) return dflt;
  const auto& v = it->second;
  if (v.size() < n_min || v.size() > n_max)
    bad("attribute '" + key + "' has " + std::to_string(v.size()) + " values, expected " +
        std::to_string(n_min) + (n_max != n_min ? " to " + std::to_string(n_max) : ""));
  std::vector<int64_t> out;
  for (double d : v) {
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 1e9)
      bad("attribute '" + key + "' must hold integers");
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

int64_t Layer::int1(const std::string& key, int64_t dflt) const {
  return ints(key, {dflt}, 1, 1)[0];
}

double Layer::num1(const std::string& key, double dflt) const {
  auto v = attr(key, {dflt});
  if (v.size() != 1 || !std::isfinite(v[0])) bad("attribute '" + key + "' must be one finite number");
  return v[0];
}

const Tensor* Layer::param(const std::string& key, bool required) const {
  auto it = spec_.params.find(key);
  if (it == spec_.params.end()) {
    if (required) bad("missing parameter '" + key + "'");
    return nullptr;
  }
  const Tensor& t = it->second;
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t.data()[i])) bad("parameter '" + key + "' holds NaN or infinity");
  return &t;
}

void Layer::expect_inputs(const std::vector<Shape>& in, size_t n_min, size_t n_max) const {
  if (in.size() < n_min || in.size() > n_max)
    bad("takes " + std::to_string(n_min) + (n_max > n_min ? " or more" : "") + " input(s), got " +
        std::to_string(in.size()));
}

void Layer::check_attrs(std::initializer_list<const char*> known) const {
  std::set<std::string> k(known.begin(), known.end());
  for (auto& kv : spec_.attrs)
    if (!k.count(kv.first)) bad("unknown attribute '" + kv.first + "'");
}

void Layer::check_params(std::initializer_list<const char*> known) const {
  std::set<std::string> k(known.begin(), known.end());
  for (auto& kv : spec_.params)
    if (!k.count(kv.first)) bad("unknown parameter '" + kv.first + "'");
}

Region Layer::input_region(const Region& r, const Shape& in) const {
  RfStep s = rf();
  if (s.global || r.empty()) return Region::full(in);
  Region o;
  o.y0 = std::max<int64_t>(0, r.y0 * s.stride_h - s.pad_h);
  o.x0 = std::max<int64_t>(0, r.x0 * s.stride_w - s.pad_w);
  o.y1 = std::min<int64_t>(in.h, (r.y1 - 1) * s.stride_h - s.pad_h + s.size_h);
  o.x1 = std::min<int64_t>(in.w, (r.x1 - 1) * s.stride_w - s.pad_w + s.size_w);
  return o;
}

int64_t Layer::param_count() const {
  int64_t n = 0;
  for (auto& kv : spec_.params) n += kv.second.shape().numel();
  return n;
}

Tensor Layer::parameter(const std::string& key) const {
  auto it = spec_.params.find(key);
  if (it == spec_.params.end()) fail(ErrorKind::NotFound, "layer '" + name() + "' has no parameter '" + key + "'");
  return it->second;
}

}  // namespace pydeconv
