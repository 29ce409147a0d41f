// pydeconv._core: NumPy <-> tensor conversion and forwarding to the C++ library. The GIL is
// released around every computation. Nothing else lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "pydeconv/error.hpp"
#include "pydeconv/gemm.hpp"
#include "pydeconv/kernels.hpp"
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
  fail(ErrorKind::Shape, what + ": expected a 1-, 2- or 4-dimensional array, got " +
                             std::to_string(r) + " dimensions");
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

Ctx make_ctx(int threads, bool reference) {
  Ctx c;
  c.threads = threads < 1 ? 1 : threads;
  c.reference = reference;
  return c;
}

LayerSpec to_spec(const py::dict& d) {
  LayerSpec s;
  s.name = d["name"].cast<std::string>();
  s.kind = d["kind"].cast<std::string>();
  s.inputs = d["inputs"].cast<std::vector<std::string>>();
  if (d.contains("attrs"))
    for (auto kv : d["attrs"].cast<py::dict>())
      s.attrs[kv.first.cast<std::string>()] = kv.second.cast<std::vector<double>>();
  if (d.contains("params"))
    for (auto kv : d["params"].cast<py::dict>()) {
      std::string key = kv.first.cast<std::string>();
      s.params[key] = to_tensor(kv.second.cast<py::array>(),
                                "layer '" + s.name + "' parameter '" + key + "'", true);
    }
  return s;
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
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

  m.def("sgemm_isa", &kernels::sgemm_isa);
  m.def("set_winograd_mode", &set_winograd_mode);
  m.def("winograd_mode", &winograd_mode);
  m.def("set_reference_kernels", &set_reference_kernels);
  m.def("reference_kernels", &reference_kernels);
  m.def("set_isa", &set_isa);
  m.def("isa", &isa);
  m.def("layer_kinds", [] {
    py::list out;
    for (const auto& k : layer_kinds()) out.append(py::make_tuple(k.name, k.rule));
    return out;
  });

  py::class_<Trace>(m, "Trace")
      .def_property_readonly("batch", &Trace::batch)
      .def_property_readonly("minimal", &Trace::minimal);

  py::class_<Net>(m, "Net")
      .def(py::init([](const std::string& input_name, std::vector<int64_t> chw, py::list layers,
                       std::vector<std::string> outputs) {
             GraphSpec g;
             g.input_name = input_name;
             if (chw.size() != 3) fail(ErrorKind::Shape, "input shape must be [C, H, W]");
             g.c = chw[0];
             g.h = chw[1];
             g.w = chw[2];
             for (auto l : layers) g.layers.push_back(to_spec(l.cast<py::dict>()));
             g.outputs = std::move(outputs);
             py::gil_scoped_release release;
             return std::make_unique<Net>(std::move(g));
           }),
           py::arg("input_name"), py::arg("input_shape"), py::arg("layers"), py::arg("outputs"))
      .def("cache_bytes", &Net::cache_bytes)
      .def("info", [](const Net& n) {
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
      .def("params", [](const Net& n) {
        py::dict out;
        for (int64_t i = 0; i < n.num_layers(); ++i) {
          const Layer& l = n.layer(static_cast<int>(i));
          for (const auto& kv : l.spec().params) {
            py::array a = to_numpy(l.parameter(kv.first));
            a.attr("flags").attr("writeable") = false;
            out[py::str(l.name() + "/" + kv.first)] = a;
          }
        }
        return out;
      })
      .def("forward",
           [](const Net& n, py::array x, const std::string& upto, bool minimal, int threads,
              bool reference, std::vector<std::string> also_keep) {
             Tensor t = to_tensor(x, "input", false, &n);
             py::gil_scoped_release release;
             return n.forward(make_ctx(threads, reference), t, upto,
                              minimal ? Keep::Minimal : Keep::All, also_keep);
           },
           py::keep_alive<0, 1>())
      .def("activation",
           [](const Net& n, const Trace& t, const std::string& layer) {
             return to_numpy(n.activation(t, layer));
           })
      .def("switches",
           [](const Net& n, const Trace& t, const std::string& layer) {
             return to_numpy(n.switches(t, layer));
           })
      .def("ran_layers",
           [](const Net& n, const Trace& t) {
             std::vector<std::string> names;
             for (int64_t i = 0; i < n.num_layers(); ++i)
               if (t.ran(static_cast<int>(i) + 1)) names.push_back(n.info()[i].name);
             return names;
           })
      .def("project_channels",
           [](const Net& n, const Trace& t, const std::string& layer, std::vector<int64_t> channels,
              const std::string& kind, int64_t y, int64_t x, const std::string& rule, int threads,
              bool reference) {
             Rule r = parse_rule(rule);
             At at;
             at.kind = kind == "max" ? At::Max : kind == "map" ? At::Map : At::Position;
             at.y = y;
             at.x = x;
             Tensor out;
             {
               py::gil_scoped_release release;
               out = n.project_channels(make_ctx(threads, reference), t, layer, channels, at, r);
             }
             return to_numpy(out);
           })
      .def("project",
           [](const Net& n, const Trace& t, const std::string& layer, py::array start,
              const std::string& rule, int threads, bool reference) {
             Rule r = parse_rule(rule);
             Tensor s = to_tensor(start, "start signal");
             Tensor out;
             {
               py::gil_scoped_release release;
               out = n.project(make_ctx(threads, reference), t, layer, s, r);
             }
             return to_numpy(out);
           })
      .def_property_readonly("layers", [](const Net& n) {
        std::vector<std::string> names;
        for (const auto& li : n.info()) names.push_back(li.name);
        return names;
      });
}
