"""PyTorch as the oracle of the structure kinds (issue 14: mul, affine, upsample, slice, pad,
channel_shuffle): the engine's forward against torch's, and its projection under every rule
against torch autograd (these kinds send the signal down by their exact gradient whatever the
rule), with F.interpolate (nearest, bilinear, both align_corners), F.pad (constant, reflect),
channel shuffle by view/transpose and broadcast multiplication.
"""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest

import pydeconv

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _torch_layer(kind, attrs, params):
    """The layer as a torch function of the input (the test nets' layer is named like its kind)."""
    a = dict(attrs)
    if kind == "upsample":
        s = a["scale"] * 2 if len(a["scale"]) == 1 else a["scale"]
        if a.get("bilinear"):
            ac = bool(a.get("align_corners", 0))
            return lambda x: F.interpolate(
                x, scale_factor=tuple(float(v) for v in s), mode="bilinear", align_corners=ac
            )
        return lambda x: F.interpolate(x, scale_factor=tuple(float(v) for v in s), mode="nearest")
    if kind == "pad":
        p = a["padding"]
        p = p * 4 if len(p) == 1 else (p * 2 if len(p) == 2 else p)
        t, left, b, r = p
        if a.get("reflect"):
            return lambda x: F.pad(x, (left, r, t, b), mode="reflect")
        return lambda x: F.pad(x, (left, r, t, b), mode="constant", value=a.get("value", 0.0))
    if kind == "slice":
        return lambda x: x[:, a["start"] : a["end"]]
    if kind == "channel_shuffle":
        return lambda x: _shuffle(x, a["groups"])
    if kind == "affine":
        scale = params.get("affine/scale")
        bias = params.get("affine/bias")

        def affine(x):
            y = (
                x * torch.from_numpy(scale.astype(np.float64)).view(1, -1, 1, 1)
                if scale is not None
                else x
            )
            return (
                y + torch.from_numpy(bias.astype(np.float64)).view(1, -1, 1, 1)
                if bias is not None
                else y
            )

        return affine
    if kind == "mul":
        how = a.get("broadcast", "none")

        def mul(x):
            other = x
            if how in ("channel", "scalar"):
                other = x.mean(dim=(2, 3), keepdim=True)
            if how in ("spatial", "scalar"):
                other = other[:, :1]
            if how == "rows":
                other = x.mean(dim=2, keepdim=True)
            return other * x if a.get("swap") else x * other

        return mul
    raise ValueError(kind)


UP = "upsample"
CASES = [
    ("up_nearest_2", UP, (3, 7, 5), {"scale": [2]}),
    ("up_nearest_3x2", UP, (2, 5, 6), {"scale": [3, 2]}),
    ("up_bilinear_2", UP, (3, 7, 5), {"scale": [2], "bilinear": 1}),
    ("up_bilinear_3", UP, (2, 5, 6), {"scale": [3], "bilinear": 1}),
    ("up_bilinear_2x3", UP, (2, 4, 5), {"scale": [2, 3], "bilinear": 1}),
    ("up_bilinear_ac_2", UP, (3, 7, 5), {"scale": [2], "bilinear": 1, "align_corners": 1}),
    ("up_bilinear_ac_3x2", UP, (2, 5, 6), {"scale": [3, 2], "bilinear": 1, "align_corners": 1}),
    ("up_bilinear_ac_1x1", UP, (2, 1, 1), {"scale": [2], "bilinear": 1, "align_corners": 1}),
    ("pad_const", "pad", (3, 7, 5), {"padding": [1, 2, 0, 3], "value": -0.75}),
    ("pad_const_zero", "pad", (3, 5, 5), {"padding": [2]}),
    ("pad_reflect", "pad", (3, 7, 5), {"padding": [1, 2, 3, 0], "reflect": 1}),
    ("pad_reflect_max", "pad", (2, 7, 5), {"padding": [6, 4, 6, 4], "reflect": 1}),
    ("slice", "slice", (13, 5, 4), {"start": 3, "end": 10}),
    ("shuffle_3", "channel_shuffle", (12, 5, 4), {"groups": 3}),
    ("shuffle_2", "channel_shuffle", (6, 3, 5), {"groups": 2}),
    ("affine_both", "affine", (5, 4, 6), {}),
    ("affine_scalar", "affine", (3, 4, 6), {"scalar": True}),
    ("mul_square", "mul", (3, 5, 4), {}),
    ("mul_se_gate", "mul", (5, 6, 4), {"broadcast": "channel"}),
    ("mul_spatial", "mul", (5, 6, 4), {"broadcast": "spatial", "swap": True}),
    ("mul_scalar", "mul", (3, 6, 4), {"broadcast": "scalar"}),
    ("mul_rows", "mul", (5, 6, 4), {"broadcast": "rows"}),
]


@pytest.mark.parametrize("cid,kind,shape,attrs", CASES, ids=[c[0] for c in CASES])
def test_forward_and_every_rule_match_torch(cid, kind, shape, attrs, kernels):
    graph, params = models.single_layer(kind, shape, attrs, seed=4)
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + shape, 12)
    out, trace = net.forward(x)
    f = _torch_layer(kind, attrs, params)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = f(xt)
    npref.assert_close(out, yt.detach().numpy(), err_msg=f"{cid}: forward")
    g = models.random_input(tuple(yt.shape), 13)
    (yt * torch.from_numpy(g.astype(np.float64))).sum().backward()
    for rule in npref.RULES:
        got = net.project(trace, kind, at=g, rule=rule)
        npref.assert_close(got, xt.grad.numpy(), err_msg=f"{cid}: {rule}")


def test_nearest_matches_torch_at_many_sizes():
    """Integer division against torch's float nearest index over sizes and scales up to 7."""
    rng = np.random.default_rng(0)
    for s in range(1, 8):
        for h in (1, 2, 5, 13):
            x = rng.standard_normal((1, 1, h, 3)).astype(np.float32)
            graph, params = models.single_layer("upsample", (1, h, 3), {"scale": [s, 1]})
            out, _ = pydeconv.build(graph, params).forward(x)
            ref = F.interpolate(torch.from_numpy(x), scale_factor=(float(s), 1.0), mode="nearest")
            np.testing.assert_array_equal(out, ref.numpy(), err_msg=f"scale {s}, H {h}")
