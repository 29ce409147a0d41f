"""Every activation row of the layer registry under all three rules against PyTorch autograd
(issue 14; docs/PROJECTION.md). A small torch twin with the same weights (conv -> activation ->
max pool -> conv -> activation -> conv) is differentiated by autograd:

- backprop: plain autograd of torch's own functions;
- guided: at a rectifying kind, a custom autograd function whose backward gives relu(g) * f'(x),
  f'(x) taken from torch's own derivative of the kind at the forward input; the others plain;
- deconvnet: at a rectifying kind, relu(g) (x unused); the others plain autograd.

Rectifying (the brief's decision, restated here on purpose rather than read from the registry):
relu, leaky_relu, prelu, silu, hardswish, mish, elu, gelu, and clip when min == 0.
"""

from __future__ import annotations

import numpy as np
import pytest

import pydeconv
from pydeconv import _core

torch = pytest.importorskip("torch")
F = torch.nn.functional

RULES = ("deconvnet", "guided", "backprop")
RECTIFYING = {"relu", "leaky_relu", "prelu", "silu", "hardswish", "mish", "elu", "gelu"}


def _rectifies(kind, attrs):
    if kind == "clip":
        return float(attrs.get("min", [-3.4e38])[0]) == 0.0
    return kind in RECTIFYING


def _torch_f(kind, attrs, slope):
    """The kind as torch computes it (strict-inside gradients where the kind has flat ends:
    hardtanh, not clamp)."""
    a = {k: float(v[0]) for k, v in attrs.items()}
    if kind == "relu":
        return F.relu
    if kind == "leaky_relu":
        return lambda x: F.leaky_relu(x, a.get("alpha", 0.01))
    if kind == "prelu":
        return lambda x: F.prelu(x, slope)
    if kind == "clip":
        return lambda x: F.hardtanh(x, a.get("min", -3.4e38), a.get("max", 3.4e38))
    if kind == "sigmoid":
        return torch.sigmoid
    if kind == "tanh":
        return torch.tanh
    if kind == "silu":
        return F.silu
    if kind == "hardsigmoid":
        alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
        return lambda x: F.hardtanh(alpha * x + beta, 0.0, 1.0)
    if kind == "hardswish":
        return F.hardswish
    if kind == "mish":
        return F.mish
    if kind == "elu":
        return lambda x: F.elu(x, a.get("alpha", 1.0))
    if kind == "gelu":
        return lambda x: F.gelu(x, approximate="tanh" if a.get("tanh", 0.0) else "none")
    raise KeyError(kind)


class _Ruled(torch.autograd.Function):
    """y = f(x); backward: relu(g) (deconvnet) or relu(g) * f'(x) (guided), f' by autograd."""

    @staticmethod
    def forward(ctx, x, f, rule):
        ctx.save_for_backward(x)
        ctx.f, ctx.rule = f, rule
        return f(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.rule == "deconvnet":
            return F.relu(g), None, None
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (d,) = torch.autograd.grad(ctx.f(xx).sum(), xx)
        return F.relu(g) * d, None, None


def _apply(kind, attrs, slope, x, rule):
    f = _torch_f(kind, attrs, slope)
    if rule == "backprop" or not _rectifies(kind, attrs):
        return f(x)
    return _Ruled.apply(x, f, rule)


# (id, kind, attrs): every activation row, with attributes that reach its kinks' both sides.
CASES = [
    ("relu", "relu", {}),
    ("leaky_relu", "leaky_relu", {}),
    ("leaky_relu_0.2", "leaky_relu", {"alpha": [0.2]}),
    ("prelu", "prelu", {}),
    ("relu6", "clip", {"min": [0.0], "max": [6.0]}),
    ("clip_0_0.5", "clip", {"min": [0.0], "max": [0.5]}),
    ("clip_band", "clip", {"min": [-0.3], "max": [0.4]}),
    ("clip_default", "clip", {}),
    ("sigmoid", "sigmoid", {}),
    ("tanh", "tanh", {}),
    ("silu", "silu", {}),
    ("hardsigmoid", "hardsigmoid", {}),
    ("hardsigmoid_torch", "hardsigmoid", {"alpha": [1 / 6], "beta": [0.5]}),
    ("hardswish", "hardswish", {}),
    ("mish", "mish", {}),
    ("elu", "elu", {}),
    ("elu_0.7", "elu", {"alpha": [0.7]}),
    ("gelu", "gelu", {}),
    ("gelu_tanh", "gelu", {"tanh": [1]}),
]
ACTIVATION_KINDS = {
    "relu", "leaky_relu", "prelu", "clip", "sigmoid", "tanh", "silu", "hardsigmoid",
    "hardswish", "mish", "elu", "gelu",
}  # fmt: skip


def test_every_activation_row_is_covered():
    rows = {r["name"]: r for r in _core.layer_registry()}
    assert ACTIVATION_KINDS <= set(rows)
    assert {kind for _, kind, _ in CASES} == ACTIVATION_KINDS
    for kind in ACTIVATION_KINDS:  # the registry declares what this test restates
        assert rows[kind]["rectifying"] == (kind in RECTIFYING or kind == "clip"), kind


def _twin(kind, attrs, seed=0):
    """The pydeconv graph, its params and the torch forward (x -> {layer: tensor})."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": (5, 3, 3, 3), "conv2": (4, 5, 3, 3), "conv3": (3, 4, 1, 1)}
    params = {}
    for name, s in shapes.items():
        fan_in = s[1] * s[2] * s[3]
        params[f"{name}/weight"] = (rng.standard_normal(s) * 1.5 / np.sqrt(fan_in)).astype(
            np.float32
        )
        params[f"{name}/bias"] = (0.1 * rng.standard_normal(s[0])).astype(np.float32)
    for name, c in (("act1", 5), ("act2", 4)):
        if kind == "prelu":
            params[f"{name}/slope"] = rng.uniform(-0.5, 0.5, c).astype(np.float32)

    def conv(name, src, pad):
        return {
            "name": name,
            "kind": "conv2d",
            "inputs": [src],
            "attrs": {"padding": [pad] * 4},
            "params": {"weight": list(shapes[name]), "bias": [shapes[name][0]]},
        }

    def act(name, src):
        layer = {"name": name, "kind": kind, "inputs": [src], "attrs": attrs}
        if kind == "prelu":
            layer["params"] = {"slope": [params[f"{name}/slope"].size]}
        return layer

    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "input", "shape": [3, 13, 13]},
        "layers": [
            conv("conv1", "input", 1),
            act("act1", "conv1"),
            {
                "name": "pool",
                "kind": "max_pool2d",
                "inputs": ["act1"],
                "attrs": {"kernel_size": [3, 3], "stride": [2, 2]},
            },
            conv("conv2", "pool", 1),
            act("act2", "conv2"),
            conv("conv3", "act2", 0),
        ],
    }
    t = {k: torch.from_numpy(v) for k, v in params.items()}

    def forward(x, rule):
        out = {}
        out["conv1"] = F.conv2d(x, t["conv1/weight"], t["conv1/bias"], padding=1)
        out["act1"] = _apply(kind, attrs, t.get("act1/slope"), out["conv1"], rule)
        out["pool"] = F.max_pool2d(out["act1"], 3, 2)
        out["conv2"] = F.conv2d(out["pool"], t["conv2/weight"], t["conv2/bias"], padding=1)
        out["act2"] = _apply(kind, attrs, t.get("act2/slope"), out["conv2"], rule)
        out["conv3"] = F.conv2d(out["act2"], t["conv3/weight"], t["conv3/bias"])
        return out

    return graph, params, forward


def _close(got, want, what):
    want = want.detach().numpy().astype(np.float64)
    atol = 1e-5 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(
        np.asarray(got, np.float64), want, rtol=1e-4, atol=atol, err_msg=what
    )


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("cid,kind,attrs", CASES, ids=[c[0] for c in CASES])
def test_twin_matches_autograd(cid, kind, attrs, rule):
    graph, params, forward = _twin(kind, attrs)
    net = pydeconv.build(graph, params)
    x = (2.0 * np.random.default_rng(1).standard_normal((2, 3, 13, 13))).astype(np.float32)
    _, trace = net.forward(x)
    for layer in ("conv3", "act2"):
        xt = torch.from_numpy(x).requires_grad_(True)
        out = forward(xt, rule)
        for name in ("act1", "act2", "conv3"):
            _close(trace.activation(name), out[name], f"{cid}: forward {name}")
        start = np.random.default_rng(2).standard_normal(out[layer].shape).astype(np.float32)
        (want,) = torch.autograd.grad(out[layer], xt, torch.from_numpy(start))
        got = net.project(trace, layer, at=start, rule=rule)
        _close(got, want, f"{cid}: {rule} from {layer}")


# Inputs exactly at and next to the kinks, straight into the activation.
KINKS = [0.0, -0.0, 1e-3, -1e-3, 3.0, -3.0, 3.001, -3.001, 2.5, -2.5, 6.0, 6.001, 5.999, 0.5,
         -0.3, 0.4, 1.0, -1.0, 20.0, -20.0, 0.25, -1.5]  # fmt: skip


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("cid,kind,attrs", CASES, ids=[c[0] for c in CASES])
def test_kinks_match_autograd(cid, kind, attrs, rule):
    """input -> activation -> 1x1 conv, the input holding every kink: torch's own derivative at
    the kink is the engine's (relu'(0) = 0, leaky'(0) = alpha, hardswish'(+-3) = 0 and 1, ...)."""
    rng = np.random.default_rng(3)
    c = 3
    w = rng.standard_normal((4, c, 1, 1)).astype(np.float32)
    params = {"conv/weight": w}
    act = {"name": "act", "kind": kind, "inputs": ["input"], "attrs": attrs}
    slope = None
    if kind == "prelu":
        params["act/slope"] = rng.uniform(-0.5, 0.5, c).astype(np.float32)
        act["params"] = {"slope": [c]}
        slope = torch.from_numpy(params["act/slope"])
    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "input", "shape": [c, 2, len(KINKS)]},
        "layers": [
            act,
            {
                "name": "conv",
                "kind": "conv2d",
                "inputs": ["act"],
                "params": {"weight": [4, c, 1, 1]},
            },
        ],
    }
    net = pydeconv.build(graph, params)
    x = np.broadcast_to(np.array(KINKS, np.float32), (1, c, 2, len(KINKS))).copy()
    x[:, :, 1] *= 2.0
    _, trace = net.forward(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = _apply(kind, attrs, slope, xt, rule)
    _close(trace.activation("act"), y, f"{cid}: forward")
    out = F.conv2d(y, torch.from_numpy(w))
    start = rng.standard_normal(out.shape).astype(np.float32)
    (want,) = torch.autograd.grad(out, xt, torch.from_numpy(start))
    got = net.project(trace, "conv", at=start, rule=rule)
    _close(got, want, f"{cid}: {rule}")


@pytest.mark.parametrize("rule", RULES)
def test_se_block_matches_autograd(rule):
    """A squeeze-and-excitation block (conv -> silu -> [global pool -> 1x1 conv -> silu -> 1x1 conv
    -> sigmoid] -> mul -> conv): the mul sends the signal into both inputs (product rule), so the
    sigmoid gate's branch gets it too, as the gradient under every rule; the silu layers by the
    rule."""
    rng = np.random.default_rng(4)
    shapes = {"c1": (6, 3, 3, 3), "sq": (3, 6, 1, 1), "ex": (6, 3, 1, 1), "c2": (4, 6, 3, 3)}
    params = {}
    for name, s in shapes.items():
        fan_in = s[1] * s[2] * s[3]
        params[f"{name}/weight"] = (rng.standard_normal(s) * 1.5 / np.sqrt(fan_in)).astype(
            np.float32
        )
        params[f"{name}/bias"] = (0.1 * rng.standard_normal(s[0])).astype(np.float32)

    def conv(name, src, pad):
        return {
            "name": name,
            "kind": "conv2d",
            "inputs": [src],
            "attrs": {"padding": [pad] * 4},
            "params": {"weight": list(shapes[name]), "bias": [shapes[name][0]]},
        }

    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "input", "shape": [3, 9, 11]},
        "layers": [
            conv("c1", "input", 1),
            {"name": "a1", "kind": "silu", "inputs": ["c1"]},
            {"name": "gap", "kind": "global_avg_pool", "inputs": ["a1"]},
            conv("sq", "gap", 0),
            {"name": "a2", "kind": "silu", "inputs": ["sq"]},
            conv("ex", "a2", 0),
            {"name": "gate", "kind": "sigmoid", "inputs": ["ex"]},
            {"name": "scaled", "kind": "mul", "inputs": ["a1", "gate"]},
            conv("c2", "scaled", 1),
        ],
    }
    net = pydeconv.build(graph, params)
    x = (2.0 * rng.standard_normal((2, 3, 9, 11))).astype(np.float32)
    _, trace = net.forward(x)
    t = {k: torch.from_numpy(v) for k, v in params.items()}
    xt = torch.from_numpy(x).requires_grad_(True)

    def c(name, v, pad):
        return F.conv2d(v, t[f"{name}/weight"], t[f"{name}/bias"], padding=pad)

    a1 = _apply("silu", {}, None, c("c1", xt, 1), rule)
    gap = a1.mean(dim=(2, 3), keepdim=True)
    gate = torch.sigmoid(c("ex", _apply("silu", {}, None, c("sq", gap, 0), rule), 0))
    out = c("c2", a1 * gate, 1)
    _close(trace.activation("c2"), out, "forward")
    start = rng.standard_normal(out.shape).astype(np.float32)
    (want,) = torch.autograd.grad(out, xt, torch.from_numpy(start))
    got = net.project(trace, "c2", at=start, rule=rule)
    _close(got, want, f"SE block {rule}")
    names = [r["name"] for r in net.rules("c2", rule)]
    assert names.index("gate") < names.index("a1") and "sq" in names
