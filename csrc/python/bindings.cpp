// pydeconv._core: NumPy <-> tensor conversion and forwarding to the C++ library. The GIL is
// released around every computation. Nothing else lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "kernels/gemm.hpp"
#include "kernels/kernels.hpp"
#include "layers/layer.hpp"
#include "pydeconv/error.hpp"
#include "pydeconv/limits.hpp"
#include "pydeconv/model.hpp"
#include "pydeconv/net.hpp"
#include "pydeconv/settings.hpp"

namespace py = pybind11;
using namespace pydeconv;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

Shape shape_of(const py::array& a, const std::string& what) {
  auto r = a.ndim();
  if (r == 1) return Shape::vec(a.shape(0));
  if (r == 2) return Shape::nc(a.shape(0), a.shape(1));
  if (r == 4) return Shape::nchw(a.shape(0), a.shape(1), a.shape(2), a.shape(3));
  std::string dims;
  for (py::ssize_t i = 0; i < r; ++i) dims += (i ? ", " : "") + std::to_string(a.shape(i));
  fail(ErrorKind::Shape, what + ": got an array of shape (" + dims + (r == 1 ? ",)" : ")") +
                             "; expected 1, 2 or 4 dimensions");
}

// `persistent`: storage that lives as long as the model (parameters) is mapped from the OS when
// large, so that it is really returned when a packed copy replaces it.
// A float32 copy of `obj`. `net`: the copy is a forward input, taken from the net's buffer pool
// (a 1x3x224x224 batch is 588 KiB: a fresh heap block of that size is mapped and faulted in on
// every call, ~150 page faults per forward).
Tensor to_tensor(const py::array& obj, const std::string& what, bool persistent = false,
                 const Net* net = nullptr) {
  FloatArray a = FloatArray::ensure(obj);
  if (!a) fail(ErrorKind::Shape, what + ": cannot convert to float32");
  const Shape s = shape_of(a, what);
  Tensor t = net != nullptr ? net->input_buffer(s) : persistent ? Tensor(s, 0.f) : Tensor(s);
  std::copy(a.data(), a.data() + t.numel(), t.data());
  return t;
}

// A NumPy view of a tensor's storage; the capsule keeps the storage alive.
template <typename T>
py::array to_numpy(const TensorT<T>& t) {
  auto* keep = new std::shared_ptr<T>(t.storage());
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<T>*>(p); });
  auto dims = t.shape().dims();
  return py::array_t<T>(dims, t.data(), owner);
}

// Where a thread count enters the engine: a count past the limit is refused here (100,000
// OpenMP threads exhaust the process's stacks and crash it).
Ctx make_ctx(int64_t threads, bool reference) {
  const int64_t max_threads = limits().max_threads;
  if (threads > max_threads)
    fail(ErrorKind::Value, "threads = " + std::to_string(threads) + " is past " +
                               limit_str("max_threads", max_threads));
  Ctx c;
  c.threads = threads < 1 ? 1 : static_cast<int>(threads);
  c.reference = reference;
  return c;
}

py::dict preprocess_dict(const Preprocess& p) {
  py::dict d;
  d["size"] = std::vector<int>{p.height, p.width};
  d["channel_order"] = p.channel_order;
  d["scale"] = p.scale;
  d["mean"] = p.mean;
  d["std"] = p.std;
  d["source_layout"] = p.source_layout;
  return d;
}

// (core Net, the graph's JSON text, the preprocessing with every default filled in).
py::tuple model_tuple(Model m) {
  return py::make_tuple(py::cast(std::move(m.net)), py::str(m.graph_json),
                        preprocess_dict(m.preprocess));
}

At to_at(const std::string& kind, int64_t y, int64_t x) {
  At at;
  at.kind = kind == "max" ? At::Max : kind == "map" ? At::Map : At::Position;
  at.y = y;
  at.x = x;
  return at;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pydeconv C++ engine";

  py::module_ errors = py::module_::import("pydeconv.errors");
  static py::object graph_err = errors.attr("GraphError");
  static py::object shape_err = errors.attr("ShapeError");
  static py::object notfound_err = errors.attr("LayerNotFoundError");
  static py::object range_err = errors.attr("ChannelError");
  static py::object format_err = errors.attr("ModelFormatError");
  static py::object base_err = errors.attr("PydeconvError");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object cls = base_err;
      switch (e.kind()) {
        case ErrorKind::Format: cls = format_err; break;
        case ErrorKind::Graph: cls = graph_err; break;
        case ErrorKind::Shape: cls = shape_err; break;
        case ErrorKind::NotFound: cls = notfound_err; break;
        case ErrorKind::Range: cls = range_err; break;
        case ErrorKind::Value: cls = base_err; break;
      }
      // Messages quote file contents (member names, JSON): undecodable bytes must not turn the
      // error into a UnicodeDecodeError.
      const std::string msg = e.what();
      PyObject* text =
          PyUnicode_DecodeUTF8(msg.data(), static_cast<Py_ssize_t>(msg.size()), "replace");
      PyErr_SetObject(cls.ptr(), text);
      Py_XDECREF(text);
    }
  });

  // The resource limits (pydeconv/limits.hpp): one definition, read and set from Python.
  py::class_<Limits> lim(m, "Limits");
  lim.def(py::init<>());
  // Every field once: readable and writable, and part of repr and ==.
  // clang-format off
#define PYDECONV_LIMITS(X) \
  X(max_tensor_bytes) X(max_dim) X(max_input_pixels) X(max_image_pixels) X(max_threads) \
  X(max_json_depth) X(max_layers) X(max_members) X(max_graph_bytes)
  // clang-format on
#define PYDECONV_FIELD(name) lim.def_readwrite(#name, &Limits::name);
  PYDECONV_LIMITS(PYDECONV_FIELD)
  lim.def("__repr__", [](const Limits& l) {
    std::string out;
#define PYDECONV_SHOW(name) \
  out += (out.empty() ? "" : ", ") + std::string(#name "=") + std::to_string(l.name);
    PYDECONV_LIMITS(PYDECONV_SHOW)
    return "Limits(" + out + ")";
  });
  lim.def("__eq__", [](const Limits& a, const py::object& other) {
    if (!py::isinstance<Limits>(other)) return false;
    const Limits& b = other.cast<const Limits&>();
    bool same = true;
#define PYDECONV_SAME(name) same = same && a.name == b.name;
    PYDECONV_LIMITS(PYDECONV_SAME)
    return same;
  });
#undef PYDECONV_SAME
#undef PYDECONV_SHOW
#undef PYDECONV_FIELD
#undef PYDECONV_LIMITS
  m.def("limits", &limits);
  m.def("set_limits", &set_limits);

  m.attr("DEFAULT_MAX_MEMORY") = kDefaultProjectMemory;  // bytes; Net::project_channels
  m.def("sgemm_isa", &kernels::sgemm_isa);
  m.def("set_winograd_mode", &set_winograd_mode);
  m.def("winograd_mode", &winograd_mode);
  m.def("set_reference_kernels", &set_reference_kernels);
  m.def("reference_kernels", &reference_kernels);
  m.def("set_isa", &set_isa);
  m.def("isa", &isa);
  // The layer registry's rows as dicts (tests/test_registry.py walks them).
  m.def("layer_registry", [] {
    py::list out;
    for (const auto& k : layer_kinds()) {
      py::list attrs, params;
      const char* types[] = {"int", "bool", "number", "ignored"};
      const char* ranges[] = {"any", "positive", "non-negative", "one"};
      for (const auto& a : k.schema.attrs)
        attrs.append(py::dict(py::arg("name") = a.name, py::arg("type") = types[int(a.type)],
                              py::arg("n_min") = a.n_min, py::arg("n_max") = a.n_max,
                              py::arg("default") = a.dflt, py::arg("range") = ranges[int(a.range)],
                              py::arg("required") = a.required, py::arg("note") = a.note));
      for (const auto& p : k.schema.params)
        params.append(py::dict(py::arg("name") = p.name, py::arg("required") = p.required));
      const Caps& c = k.caps;
      const Needs& n = k.needs;
      out.append(py::dict(
          py::arg("name") = k.name, py::arg("rule") = k.rule, py::arg("reference") = k.reference,
          py::arg("rules") =
              py::dict(py::arg("deconvnet") = k.rules[0], py::arg("guided") = k.rules[1],
                       py::arg("backprop") = k.rules[2]),
          py::arg("rectifying") = k.rectifying,
          py::arg("schema") = py::dict(py::arg("attrs") = attrs, py::arg("params") = params,
                                       py::arg("min_inputs") = k.schema.min_inputs,
                                       py::arg("max_inputs") = k.schema.max_inputs),
          py::arg("caps") = py::dict(py::arg("forward_in_place") = c.forward_in_place,
                                     py::arg("fuses_relu") = c.fuses_relu,
                                     py::arg("fusable_relu") = c.fusable_relu,
                                     py::arg("backward_in_place") = c.backward_in_place,
                                     py::arg("backward_region_only") = c.backward_region_only,
                                     py::arg("backward_overwrites") = c.backward_overwrites),
          py::arg("needs") = py::dict(py::arg("input") = n.input, py::arg("output") = n.output,
                                      py::arg("mask") = n.mask, py::arg("switches") = n.switches)));
    }
    return out;
  });

  py::class_<Trace>(m, "Trace").def_property_readonly("batch", &Trace::batch);

  // Models come only from the C++ format code (format/model.cpp): the one definition of a valid
  // model file, for Python as for C++ applications.
  m.def("load_model", [](const std::string& path) {
    Model model;
    {
      py::gil_scoped_release release;
      model = load_model(path);
    }
    return model_tuple(std::move(model));
  });
  m.def("build_model",
        [](const std::string& graph_json, const py::dict& params, const std::string& label) {
          std::map<std::string, Tensor> tensors;
          for (auto kv : params) {
            const std::string key = kv.first.cast<std::string>();
            tensors[key] = to_tensor(kv.second.cast<py::array>(), "parameter '" + key + "'", true);
          }
          Model model;
          {
            py::gil_scoped_release release;
            model = model_from_json(graph_json, std::move(tensors), label);
          }
          return model_tuple(std::move(model));
        });

  py::class_<Net>(m, "Net")
      .def("cache_bytes", &Net::cache_bytes)
      .def("layer_index", &Net::layer_index)
      .def_property_readonly("outputs", &Net::outputs)
      .def("info",
           [](const Net& n) {
             py::list out;
             for (const auto& li : n.info()) {
               py::dict d;
               d["name"] = li.name;
               d["kind"] = li.kind;
               d["inputs"] = li.inputs;
               auto dims = li.shape.dims();
               d["shape"] = py::tuple(py::cast(std::vector<int64_t>(dims.begin() + 1, dims.end())));
               d["rf_size"] = py::make_tuple(li.rf_size_h, li.rf_size_w);
               d["rf_stride"] = py::make_tuple(li.rf_stride_h, li.rf_stride_w);
               d["rf_start"] = py::make_tuple(li.rf_start_h, li.rf_start_w);
               d["params"] = li.params;
               d["rule"] = li.rule;
               out.append(d);
             }
             return out;
           })
      .def("rules",
           [](const Net& n, const std::string& layer, const std::string& rule) {
             py::list out;
             for (const LayerRule& r : n.rules(layer, parse_rule(rule)))
               out.append(py::dict(py::arg("name") = r.name, py::arg("kind") = r.kind,
                                   py::arg("rule") = r.rule));
             return out;
           })
      .def("params",
           [](const Net& n) {
             py::dict out;
             for (const auto& kv : n.parameters()) {
               py::array a = to_numpy(kv.second);
               a.attr("flags").attr("writeable") = false;
               out[py::str(kv.first)] = a;
             }
             return out;
           })
      .def(
          "forward",
          [](const Net& n, py::array x, const std::string& upto, bool minimal, int64_t threads,
             bool reference, std::vector<std::string> also_keep) {
            Tensor t = to_tensor(x, "input", false, &n);
            py::gil_scoped_release release;
            return n.forward(make_ctx(threads, reference), t, upto,
                             minimal ? Keep::Minimal : Keep::All, also_keep);
          },
          py::keep_alive<0, 1>())
      .def("activation", [](const Net& n, const Trace& t,
                            const std::string& layer) { return to_numpy(n.activation(t, layer)); })
      .def("switches", [](const Net& n, const Trace& t,
                          const std::string& layer) { return to_numpy(n.switches(t, layer)); })
      .def("ran_layers",
           [](const Net& n, const Trace& t) {
             std::vector<std::string> names;
             for (int64_t i = 0; i < n.num_layers(); ++i)
               if (t.ran(static_cast<int>(i) + 1)) names.push_back(n.info()[i].name);
             return names;
           })
      .def(
          "project_channels",
          [](const Net& n, const Trace& t, const std::string& layer, std::vector<int64_t> channels,
             const std::string& kind, int64_t y, int64_t x, const std::string& rule,
             int64_t threads, bool reference, py::object max_memory, py::object progress,
             const std::string& to) {
            Rule r = parse_rule(rule);
            const At at = to_at(kind, y, x);
            ProjectOptions opt;
            opt.to = to;
            if (!max_memory.is_none()) opt.max_memory = max_memory.cast<int64_t>();
            if (!progress.is_none())
              opt.progress = [progress](int64_t done, int64_t total) {
                py::gil_scoped_acquire acquire;
                progress(done, total);
              };
            Tensor out;
            {
              py::gil_scoped_release release;
              out =
                  n.project_channels(make_ctx(threads, reference), t, layer, channels, at, r, opt);
            }
            return to_numpy(out);
          },
          py::arg("trace"), py::arg("layer"), py::arg("channels"), py::arg("kind"), py::arg("y"),
          py::arg("x"), py::arg("rule"), py::arg("threads"), py::arg("reference"),
          py::arg("max_memory") = py::none(), py::arg("progress") = py::none(), py::arg("to") = "")
      .def("projection_bytes_per_sample", &Net::projection_bytes_per_sample, py::arg("layer"),
           py::arg("to") = "")
      .def("positions",
           [](const Net& n, const Trace& t, const std::string& layer, std::vector<int64_t> channels,
              const std::string& kind, int64_t y, int64_t x) {
             std::vector<Position> chosen = n.positions(t, layer, channels, to_at(kind, y, x));
             py::array_t<int64_t> out({static_cast<py::ssize_t>(chosen.size()), py::ssize_t(2)});
             auto v = out.mutable_unchecked<2>();
             for (size_t i = 0; i < chosen.size(); ++i) {
               v(static_cast<py::ssize_t>(i), 0) = chosen[i].y;
               v(static_cast<py::ssize_t>(i), 1) = chosen[i].x;
             }
             return out;
           })
      .def(
          "project",
          [](const Net& n, const Trace& t, const std::string& layer, py::array start,
             const std::string& rule, int64_t threads, bool reference, const std::string& to) {
            Rule r = parse_rule(rule);
            Tensor s = to_tensor(start, "start signal");
            Tensor out;
            {
              py::gil_scoped_release release;
              out = n.project(make_ctx(threads, reference), t, layer, s, r, to);
            }
            return to_numpy(out);
          },
          py::arg("trace"), py::arg("layer"), py::arg("start"), py::arg("rule"), py::arg("threads"),
          py::arg("reference"), py::arg("to") = "")
      .def_property_readonly("layers", [](const Net& n) {
        std::vector<std::string> names;
        for (const auto& li : n.info()) names.push_back(li.name);
        return names;
      });
}
