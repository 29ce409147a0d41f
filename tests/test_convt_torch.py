"""conv_transpose2d and layer_norm against PyTorch: forward against F.conv_transpose2d and a
channels-first LayerNorm, projections against autograd (neither kind has a rule of its own, so all
three rules are the exact gradient)."""

from __future__ import annotations

import models
import numpy as np
import pytest

import pydeconv

torch = pytest.importorskip("torch")
F = torch.nn.functional

RULES = ("deconvnet", "guided", "backprop")


def _graph(in_shape, layers):
    return {
        "format": "pydeconv",
        "version": 1,
        "name": "torch-oracle",
        "input": {"name": "input", "shape": list(in_shape)},
        "layers": layers,
    }


def _torch_convt(x, w, b, stride, pad, out_pad, dilation, groups):
    """torch's conv_transpose2d with [t, l, b, r] padding: the unpadded result (output padding as
    extra bias-only rows and columns past its end), cropped by each side's padding. Symmetric
    padding goes to torch itself."""
    pt, pl, pb, pr = pad
    if pt == pb and pl == pr:
        return F.conv_transpose2d(x, w, b, stride, (pt, pl), out_pad, groups, dilation)
    full = F.conv_transpose2d(x, w, b, stride, 0, 0, groups, dilation)
    n, c, h, wd = full.shape
    bias = (b if b is not None else torch.zeros(c, dtype=x.dtype))[None, :, None, None]
    full = torch.cat([full, bias.expand(n, c, out_pad[0], wd)], 2)
    full = torch.cat([full, bias.expand(n, c, h + out_pad[0], out_pad[1])], 3)
    return full[:, :, pt : full.shape[2] - pb, pl : full.shape[3] - pr]


# (id, input (C, H, W), out channels, kernel, stride, padding [t,l,b,r], output_padding,
#  dilation, groups, bias)
CONVT = [
    ("k3_s1", (3, 7, 7), 5, (3, 3), (1, 1), (1, 1, 1, 1), (0, 0), (1, 1), 1, True),
    ("k3_s1_wide", (8, 7, 5), 16, (3, 3), (1, 1), (0, 0, 0, 0), (0, 0), (1, 1), 1, True),
    ("k4_s2", (16, 6, 5), 8, (4, 4), (2, 2), (1, 1, 1, 1), (0, 0), (1, 1), 1, True),
    ("k2_s2_unet", (13, 7, 7), 13, (2, 2), (2, 2), (0, 0, 0, 0), (0, 0), (1, 1), 1, False),
    ("groups_op", (6, 5, 5), 9, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (1, 1), 3, True),
    ("depthwise", (12, 6, 6), 12, (3, 3), (2, 2), (1, 1, 1, 1), (1, 0), (1, 1), 12, True),
    ("dilation_op", (3, 7, 5), 4, (3, 3), (1, 1), (2, 1, 2, 1), (1, 1), (2, 2), 1, True),
    ("rect_s3_2", (3, 5, 7), 6, (2, 5), (3, 2), (1, 0, 1, 0), (2, 1), (1, 1), 1, True),
    ("asym_pad", (4, 6, 7), 6, (3, 3), (2, 2), (0, 1, 2, 1), (1, 0), (1, 1), 2, True),
    ("op_past_pad", (3, 4, 5), 4, (3, 3), (3, 3), (0, 1, 0, 0), (2, 1), (1, 1), 1, True),
    ("large", (48, 12, 12), 32, (4, 4), (2, 2), (1, 1, 1, 1), (0, 0), (1, 1), 1, True),
]


def _convt_case(case, seed=0):
    _, shape, oc, k, s, pad, op, d, g, bias = case
    rng = np.random.default_rng(seed)
    w = (
        rng.standard_normal((shape[0], oc // g) + k) / np.sqrt(shape[0] // g * k[0] * k[1])
    ).astype(np.float32)
    params = {"ct/weight": w}
    layer = {
        "name": "ct",
        "kind": "conv_transpose2d",
        "inputs": ["input"],
        "attrs": {
            "kernel_size": list(k),
            "stride": list(s),
            "padding": list(pad),
            "output_padding": list(op),
            "dilation": list(d),
            "groups": g,
        },
        "params": {"weight": list(w.shape)},
    }
    if bias:
        params["ct/bias"] = (0.1 * rng.standard_normal(oc)).astype(np.float32)
        layer["params"]["bias"] = [oc]
    return _graph(shape, [layer]), params


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("case", CONVT, ids=[c[0] for c in CONVT])
def test_conv_transpose2d_against_torch(case, rule, threads, kernels):
    _, shape, oc, k, s, pad, op, d, g, _ = case
    graph, params = _convt_case(case)
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + shape, 1)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    b = params.get("ct/bias")
    ref = _torch_convt(
        xt,
        torch.tensor(params["ct/weight"], dtype=torch.float64),
        None if b is None else torch.tensor(b, dtype=torch.float64),
        s,
        pad,
        op,
        d,
        g,
    )
    out, trace = net.forward(x, threads=threads)
    assert out.shape == tuple(ref.shape)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    # A signed start signal over the whole output, then one position of the last channel.
    gy = models.random_input(out.shape, 2)
    (gx,) = torch.autograd.grad(ref, xt, torch.tensor(gy, dtype=torch.float64), retain_graph=True)
    got = net.project(trace, "ct", at=gy, rule=rule, threads=threads)
    np.testing.assert_allclose(got, gx.numpy(), rtol=1e-4, atol=1e-5)
    y, xx = out.shape[2] // 2, out.shape[3] - 1
    one = np.zeros_like(out)
    one[:, oc - 1, y, xx] = out[:, oc - 1, y, xx]
    (gx,) = torch.autograd.grad(ref, xt, torch.tensor(one, dtype=torch.float64))
    got = net.project(trace, "ct", channel=oc - 1, at=(y, xx), rule=rule, threads=threads)
    np.testing.assert_allclose(got, gx.numpy(), rtol=1e-4, atol=1e-6)


def _torch_layer_norm(x, scale, bias, eps):
    """ConvNeXt's channels-first LayerNorm: F.layer_norm over the channels of each position."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), scale, bias, eps)
    return y.permute(0, 3, 1, 2)


LAYER_NORM = [
    ("c13", (13, 7, 7), 1e-5, True),
    ("c1", (1, 3, 5), 1e-5, True),
    ("c3_eps", (3, 1, 13), 0.1, False),
    ("c96_threaded", (96, 20, 20), 1e-6, True),
]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("case", LAYER_NORM, ids=[c[0] for c in LAYER_NORM])
def test_layer_norm_against_torch(case, rule, threads, kernels):
    _, shape, eps, bias = case
    rng = np.random.default_rng(4)
    c = shape[0]
    params = {"ln/scale": (1.0 + 0.5 * rng.standard_normal(c)).astype(np.float32)}
    layer = {
        "name": "ln",
        "kind": "layer_norm",
        "inputs": ["input"],
        "attrs": {"epsilon": eps},
        "params": {"scale": [c]},
    }
    if bias:
        params["ln/bias"] = (0.1 * rng.standard_normal(c)).astype(np.float32)
        layer["params"]["bias"] = [c]
    net = pydeconv.build(_graph(shape, [layer]), params)
    x = models.random_input((2,) + shape, 5) * 3 + 1
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    ref = _torch_layer_norm(xt, t["ln/scale"], t.get("ln/bias"), eps)
    out, trace = net.forward(x, threads=threads)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    gy = models.random_input(out.shape, 6)
    (gx,) = torch.autograd.grad(ref, xt, torch.tensor(gy, dtype=torch.float64), retain_graph=True)
    got = net.project(trace, "ln", at=gy, rule=rule, threads=threads)
    np.testing.assert_allclose(got, gx.numpy(), rtol=1e-4, atol=1e-5)
    (gx,) = torch.autograd.grad(ref, xt, torch.tensor(np.ones_like(gy), dtype=torch.float64))
    got = net.project(trace, "ln", at=np.ones_like(gy), rule=rule, threads=threads)
    np.testing.assert_allclose(got, gx.numpy(), rtol=1e-4, atol=1e-5)


def test_decoder_against_autograd(threads, kernels):
    """conv -> ReLU -> transposed conv -> layer norm -> conv (tests/models.py decoder_net): the
    backprop projection of one unit of the last layer, region-limited through every step, is the
    gradient; under guided it is autograd with the ReLU's gradient clamped at zero."""
    graph, params = models.decoder_net()
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + tuple(graph["input"]["shape"]), 9)
    out, trace = net.forward(x, threads=threads)
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    layers = {lay["name"]: lay for lay in graph["layers"]}

    def run(xt, guided):
        r = F.relu(F.conv2d(xt, p["enc/weight"], p["enc/bias"], 2, 1))
        if guided:  # the ReLU's output gradient clamped at zero before its own backward
            r.register_hook(lambda g: g.clamp(min=0))
        a = layers["up"]["attrs"]
        u = _torch_convt(
            r, p["up/weight"], p["up/bias"], a["stride"], a["padding"], a["output_padding"],
            (1, 1), 1,
        )  # fmt: skip
        n = _torch_layer_norm(u, p["ln/scale"], p["ln/bias"], 1e-5)
        return F.conv2d(n, p["head/weight"], p["head/bias"], 1, 1)

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ref = run(xt, False)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    y, xx = 5, 7
    for rule in ("backprop", "guided"):
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ref = run(xt, rule == "guided")
        start = torch.zeros_like(ref)
        start[:, 3, y, xx] = ref[:, 3, y, xx].detach()
        (gx,) = torch.autograd.grad(ref, xt, start)
        got = net.project(trace, "head", channel=3, at=(y, xx), rule=rule, threads=threads)
        np.testing.assert_allclose(got, gx.numpy(), rtol=1e-4, atol=1e-6, err_msg=rule)
