// The parts every layer kind shares: the schema checks that run before each kind's shape rule,
// attribute and parameter access, and the receptive-field step back to an input region.
#include "layers/layer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

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

const char* Layer::rule_text(Rule rule) const {
  return row_->rules[static_cast<int>(rectifying_ ? rule : Rule::Backprop)];
}

const char* Layer::rule_line() const {
  return rectifying_ ? row_->rule : row_->rules[static_cast<int>(Rule::Backprop)];
}

namespace {

const AttrSchema* find_attr(const Schema& s, const std::string& key) {
  for (const AttrSchema& a : s.attrs)
    if (key == a.name) return &a;
  return nullptr;
}

const char* range_text(Range r) {
  switch (r) {
    case Range::Positive: return "positive";
    case Range::NonNegative: return "non-negative";
    case Range::One: return "1 (the only value supported)";
    case Range::Any: break;
  }
  return "";
}

bool in_range(Range r, double v) {
  switch (r) {
    case Range::Positive: return v > 0;
    case Range::NonNegative: return v >= 0;
    case Range::One: return v == 1;
    case Range::Any: break;
  }
  return true;
}

}  // namespace

void Layer::check_schema(const std::vector<Shape>& in) const {
  const Schema& sc = row_->schema;
  const size_t n_min = static_cast<size_t>(sc.min_inputs);
  const size_t n_max = sc.max_inputs == 0 ? SIZE_MAX : static_cast<size_t>(sc.max_inputs);
  if (in.size() < n_min || in.size() > n_max)
    bad("takes " + std::to_string(n_min) + (n_max > n_min ? " or more" : "") + " input(s), got " +
        std::to_string(in.size()));
  for (auto& kv : spec_.attrs)
    if (!find_attr(sc, kv.first)) bad("unknown attribute '" + kv.first + "'");
  for (auto& kv : spec_.params) {
    bool known = false;
    for (const ParamSchema& p : sc.params) known = known || kv.first == p.name;
    if (!known) bad("unknown parameter '" + kv.first + "'");
  }
  for (const ParamSchema& p : sc.params) {
    auto it = spec_.params.find(p.name);
    if (it == spec_.params.end()) {
      if (p.required) bad("missing parameter '" + std::string(p.name) + "'");
      continue;
    }
    const Tensor& t = it->second;
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t.data()[i])) bad("parameter '" + it->first + "' holds NaN or infinity");
  }
  for (const AttrSchema& a : sc.attrs) {
    auto it = spec_.attrs.find(a.name);
    if (it == spec_.attrs.end()) {
      if (a.required) bad("missing attribute '" + std::string(a.name) + "'");
      continue;
    }
    if (a.type == AttrType::Ignored) continue;
    const std::string key = a.name;
    const auto& v = it->second;
    const size_t lo = static_cast<size_t>(a.n_min), hi = static_cast<size_t>(a.n_max);
    if (v.size() < lo || v.size() > hi) {
      if (a.type == AttrType::Number && lo == 1 && hi == 1)
        bad("attribute '" + key + "' must be one finite number");
      bad("attribute '" + key + "' has " + std::to_string(v.size()) + " values, expected " +
          std::to_string(lo) + (hi != lo ? " to " + std::to_string(hi) : ""));
    }
    for (double d : v) {
      if (a.type == AttrType::Number) {
        if (!std::isfinite(d)) bad("attribute '" + key + "' must be one finite number");
      } else if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 1e9) {
        bad("attribute '" + key + "' must hold integers");
      }
      if (!in_range(a.range, d)) bad("attribute '" + key + "' must be " + range_text(a.range));
    }
  }
}

Shape Layer::infer(const std::vector<Shape>& in) {
  check_schema(in);
  return shape(in);
}

std::vector<int64_t> Layer::ints(const std::string& key, std::vector<int64_t> dflt) const {
  auto it = spec_.attrs.find(key);
  if (it == spec_.attrs.end()) return dflt;
  std::vector<int64_t> out;
  for (double d : it->second) out.push_back(static_cast<int64_t>(d));  // integers: check_schema
  return out;
}

int64_t Layer::int1(const std::string& key) const {
  const AttrSchema* a = find_attr(row_->schema, key);
  return ints(key, {static_cast<int64_t>(a->dflt.at(0))})[0];
}

double Layer::num1(const std::string& key) const {
  auto it = spec_.attrs.find(key);
  if (it != spec_.attrs.end()) return it->second[0];
  return find_attr(row_->schema, key)->dflt.at(0);
}

const Tensor* Layer::param(const std::string& key) const {
  auto it = spec_.params.find(key);
  return it == spec_.params.end() ? nullptr : &it->second;
}

namespace {

// Floor and ceiling of a / b for b > 0, any sign of a.
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

}  // namespace

Region Layer::input_region(const Region& r, const Shape& in) const {
  RfStep s = rf();
  if (s.global || r.empty()) return Region::full(in);
  // Output rows [y0, y1) cover the spread-out input positions [y0*stride - pad, (y1-1)*stride -
  // pad + size), i.e. the inputs i with i*up in there (up 1: the positions themselves).
  Region o;
  o.y0 = std::max<int64_t>(0, ceil_div(r.y0 * s.stride_h - s.pad_h, s.up_h));
  o.x0 = std::max<int64_t>(0, ceil_div(r.x0 * s.stride_w - s.pad_w, s.up_w));
  o.y1 = std::min<int64_t>(in.h,
                           floor_div((r.y1 - 1) * s.stride_h - s.pad_h + s.size_h - 1, s.up_h) + 1);
  o.x1 = std::min<int64_t>(in.w,
                           floor_div((r.x1 - 1) * s.stride_w - s.pad_w + s.size_w - 1, s.up_w) + 1);
  return o;
}

int64_t Layer::param_count() const {
  int64_t n = 0;
  for (auto& kv : spec_.params) n += kv.second.shape().numel();
  return n;
}

Tensor Layer::parameter(const std::string& key) const {
  auto it = spec_.params.find(key);
  if (it == spec_.params.end())
    fail(ErrorKind::NotFound, "layer '" + name() + "' has no parameter '" + key + "'");
  return it->second;
}

}  // namespace pydeconv
