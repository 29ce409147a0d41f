"""Cross-checks against PyTorch (and ONNX Runtime): an independent implementation of every layer and
of the three projection rules. Skipped when torch (or onnx/onnxruntime for the export test) is not
installed; the rest of the suite never needs them.

- forward: the tiny ZFNet-like and DAG models rebuilt in torch from the same parameters;
- backprop: torch autograd's input gradient from the same start signal;
- guided: autograd with a backward hook on every ReLU that clamps the gradient at 0;
- deconvnet: an explicit torch DeconvNet for the chain (unpool through the recorded indices,
  conv_transpose2d, ReLU on the way down) and, for the DAG, autograd with a ReLU whose backward is
  relu(g) (Zeiler & Fergus's rectification, independent of the forward mask).
"""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest

import pydeconv

torch = pytest.importorskip("torch")
F = torch.nn.functional

MODELS = {"zfnet": models.zfnet_like, "dag": models.small_dag}


class _DeconvReLU(torch.autograd.Function):
    """ReLU forward; deconvnet backward: rectify the signal itself, ignore the forward mask."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


def _guided_relu():
    relu = torch.nn.ReLU()
    # grad_input of ReLU is g * [x > 0]; clamping it gives guided backprop's relu(g) * [x > 0].
    relu.register_full_backward_hook(lambda module, grad_in, grad_out: (grad_in[0].clamp(min=0),))
    return relu


RELUS = {"backprop": lambda: F.relu, "guided": _guided_relu, "deconvnet": lambda: _DeconvReLU.apply}


def _t(array):
    return torch.from_numpy(np.asarray(array, dtype=np.float64))


def torch_forward(graph, params, x, rule="backprop"):
    """Every layer's output (float64 torch tensors) and each max pool's indices; ReLUs backward
    as ``rule`` says."""
    acts, indices = {graph["input"]["name"]: x}, {}
    for layer in graph["layers"]:
        name, kind = layer["name"], layer["kind"]
        ins = [acts[i] for i in layer["inputs"]]
        h = ins[0]
        p = {k: _t(params[f"{name}/{k}"]) for k in layer.get("params", {})}
        attrs = layer.get("attrs", {})
        if kind == "conv2d":
            a = npref._conv_attrs(layer, p["weight"])
            t, left, b, r = a["pad"]
            out = F.conv2d(
                F.pad(h, (left, r, t, b)),
                p["weight"],
                p.get("bias"),
                stride=a["stride"],
                dilation=a["dil"],
                groups=a["groups"],
            )
        elif kind == "relu":
            out = RELUS[rule]()(h)
        elif kind in ("max_pool2d", "avg_pool2d"):
            a = npref._pool_attrs(layer)
            t, left, b, r = a["pad"]
            assert (t, left) == (b, r), "torch pools take symmetric padding only"
            if kind == "max_pool2d":
                out, indices[name] = F.max_pool2d(
                    h, a["kernel"], a["stride"], (t, left), ceil_mode=a["ceil"], return_indices=True
                )
            else:
                out = F.avg_pool2d(
                    h,
                    a["kernel"],
                    a["stride"],
                    (t, left),
                    ceil_mode=a["ceil"],
                    count_include_pad=a["include_pad"],
                )
        elif kind == "global_avg_pool":
            out = h.mean(dim=(2, 3), keepdim=True)
        elif kind == "lrn":
            out = F.local_response_norm(
                h, int(attrs["size"]), attrs["alpha"], attrs["beta"], attrs["bias"]
            )
        elif kind == "batch_norm":
            shape = (1, -1, 1, 1) if h.dim() == 4 else (1, -1)
            scale = p["scale"] / torch.sqrt(p["var"] + attrs.get("epsilon", 1e-5))
            out = (h - p["mean"].view(shape)) * scale.view(shape) + p["bias"].view(shape)
        elif kind == "linear":
            out = F.linear(h.flatten(1), p["weight"], p.get("bias"))
        elif kind == "flatten":
            out = h.flatten(1)
        elif kind == "dropout":
            out = h
        elif kind == "softmax":
            out = torch.softmax(h, dim=1)
        elif kind == "add":
            out = sum(ins[1:], ins[0])
        elif kind == "concat":
            out = torch.cat(ins, dim=1)
        else:
            raise AssertionError(f"no torch mapping for {kind}")
        acts[name] = out
    return acts, indices


class Case:
    def __init__(self, name):
        self.graph, self.params = MODELS[name]()
        self.net = pydeconv.build(self.graph, self.params)
        self.x = models.random_input((2,) + self.net.input_shape, 31)
        self.out, self.trace = self.net.forward(self.x)
        self.acts, self.indices = torch_forward(self.graph, self.params, _t(self.x))

    def start(self, layer, seed):
        return (
            np.random.default_rng(seed)
            .standard_normal(self.trace.activation(layer).shape)
            .astype(np.float32)
        )

    def autograd(self, layer, start, rule):
        x = _t(self.x).requires_grad_(True)
        acts, _ = torch_forward(self.graph, self.params, x, rule)
        acts[layer].backward(_t(start))
        return x.grad.numpy()


_CASES = {}


def case(name):
    if name not in _CASES:
        _CASES[name] = Case(name)
    return _CASES[name]


def _layers(name):
    return [(name, layer["name"]) for layer in MODELS[name]()[0]["layers"]]


LAYERS = _layers("zfnet") + _layers("dag")
IDS = [f"{m}-{layer}" for m, layer in LAYERS]


@pytest.mark.parametrize("model", MODELS)
def test_forward_matches_torch(model):
    c = case(model)
    for name in c.net.layers:
        npref.assert_close(c.trace.activation(name), c.acts[name].numpy(), err_msg=name)
    for name, idx in c.indices.items():
        np.testing.assert_array_equal(c.trace.switches(name), idx.numpy(), err_msg=name)


@pytest.mark.parametrize("rule", ["backprop", "guided"])
@pytest.mark.parametrize("model,layer", LAYERS, ids=IDS)
def test_gradient_rules_match_torch_autograd(model, layer, rule):
    c = case(model)
    start = c.start(layer, len(layer))
    got = c.net.project(c.trace, layer, at=start, rule=rule)
    npref.assert_close(got, c.autograd(layer, start, rule), err_msg=rule)


@pytest.mark.parametrize(
    "model,layer",
    [("zfnet", "conv2"), ("zfnet", "pool2"), ("zfnet", "relu4"), ("dag", "cat1"), ("dag", "relu3")],
)
def test_max_activation_matches_torch(model, layer):
    """at="max": a one-hot start at the channel's strongest activation, per sample."""
    c = case(model)
    act = c.acts[layer].numpy()
    channel = 1
    start = np.zeros(act.shape, np.float32)
    for n in range(act.shape[0]):
        pos = np.unravel_index(np.argmax(act[n, channel]), act.shape[2:])
        start[(n, channel) + pos] = act[(n, channel) + pos]
    for rule in ("backprop", "guided", "deconvnet"):
        got = c.net.project(c.trace, layer, channel=channel, at="max", rule=rule)
        npref.assert_close(got, c.autograd(layer, start, rule), err_msg=rule)


def explicit_deconvnet(c, layer, start):
    """Zeiler & Fergus's DeconvNet on the chain, written out layer by layer from ``layer`` down."""
    names = c.net.layers
    g = _t(start)
    for i in range(names.index(layer), -1, -1):
        spec = c.graph["layers"][i]
        name, kind = spec["name"], spec["kind"]
        below = c.acts[spec["inputs"][0]]
        if kind == "relu":
            g = g.clamp(min=0)
        elif kind == "max_pool2d":
            # Unpool through the indices max_pool2d returned. With overlapping windows several
            # outputs share a switch: their contributions add (MaxUnpool2d would keep only one of
            # them).
            n, ch, h, w = below.shape
            unpooled = torch.zeros(n, ch, h * w, dtype=g.dtype)
            g = unpooled.scatter_add_(2, c.indices[name].flatten(2), g.flatten(2)).view(n, ch, h, w)
        elif kind == "conv2d":
            weight = _t(c.params[f"{name}/weight"])
            a = npref._conv_attrs(spec, weight)
            t, left, b, r = a["pad"]
            up = F.conv_transpose2d(
                g, weight, stride=a["stride"], dilation=a["dil"], groups=a["groups"]
            )
            hp, wp = below.shape[2] + t + b, below.shape[3] + left + r
            up = F.pad(
                up, (0, wp - up.shape[3], 0, hp - up.shape[2])
            )  # rows the stride never reached
            g = up[:, :, t : t + below.shape[2], left : left + below.shape[3]]
        elif kind == "linear":
            g = (g @ _t(c.params[f"{name}/weight"])).view(below.shape)
        elif kind == "flatten":
            g = g.view(below.shape)
        elif kind == "dropout":
            pass
        elif kind in ("lrn", "softmax"):
            # Neither is in the paper; pydeconv passes the signal through their Jacobian at the
            # forward input (docs: the layer's "rule" in net.info()).
            fn = {
                "lrn": lambda v: F.local_response_norm(
                    v,
                    int(spec["attrs"]["size"]),
                    spec["attrs"]["alpha"],
                    spec["attrs"]["beta"],
                    spec["attrs"]["bias"],
                ),
                "softmax": lambda v: torch.softmax(v, dim=1),
            }[kind]
            _, g = torch.autograd.functional.vjp(fn, below, g)
        else:
            raise AssertionError(f"{kind} is not in the chain")
    return g.numpy()


@pytest.mark.parametrize("layer", [name for _, name in _layers("zfnet")])
def test_deconvnet_matches_explicit_torch_deconvnet(layer):
    c = case("zfnet")
    start = c.start(layer, 3 * len(layer))
    got = c.net.project(c.trace, layer, at=start, rule="deconvnet")
    npref.assert_close(got, explicit_deconvnet(c, layer, start), err_msg=layer)
    # The same through autograd with the deconvnet ReLU: two torch formulations agree with the
    # engine.
    npref.assert_close(got, c.autograd(layer, start, "deconvnet"), err_msg=f"{layer} autograd")


@pytest.mark.parametrize("layer", [name for _, name in _layers("dag")])
def test_deconvnet_matches_torch_on_the_dag(layer):
    c = case("dag")
    start = c.start(layer, 5 * len(layer))
    got = c.net.project(c.trace, layer, at=start, rule="deconvnet")
    npref.assert_close(got, c.autograd(layer, start, "deconvnet"), err_msg=layer)


class _Exported(torch.nn.Module):
    """A ZFNet-shaped torch model as a user would write it, for the ONNX export round trip."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 7, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(3, stride=2, ceil_mode=True),
            torch.nn.Conv2d(8, 12, 3, padding=1, groups=2),
            torch.nn.BatchNorm2d(12),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.head = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(12 * 3 * 3, 10),
            torch.nn.ReLU(),
            torch.nn.Dropout(),
            torch.nn.Linear(10, 5),
        )
        bn = self.features[4]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        self.eval()

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # the legacy exporter, asked for on purpose
def test_torch_onnx_export_round_trip(tmp_path):
    pytest.importorskip("onnx", reason="torch's ONNX exporter needs the onnx package")
    ort = pytest.importorskip("onnxruntime")
    model = _Exported()
    x = models.random_input((2, 3, 29, 29), 41)
    path = str(tmp_path / "exported.onnx")
    torch.onnx.export(
        model,
        torch.from_numpy(x[:1]),
        path,
        dynamo=False,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
    )
    net = pydeconv.load(path)
    assert net.input_shape == (3, 29, 29)
    out, trace = net.forward(x)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(out, model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    # The imported net projects like torch autograd does on the original model.
    xt = torch.from_numpy(x).double().requires_grad_(True)
    model.double()
    logits = model(xt)
    start = np.zeros(out.shape, np.float32)
    start[:, 2] = 1.0
    logits.backward(_t(start))
    got = net.project(trace, net.outputs[0], at=start, rule="backprop")
    npref.assert_close(got, xt.grad.numpy())
