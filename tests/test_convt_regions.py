"""Receptive fields through upsampling layers (RfStep::up): the field a net reports for a unit
after a transposed convolution holds every pixel its projection reaches, and the exact input
rectangle the executor carries gives the same projection as the whole-map one (test_layers and
test_convt_torch compare single-position projections with npref and autograd)."""

from __future__ import annotations

import models
import numpy as np
import pytest

import pydeconv
from pydeconv import image
from pydeconv.errors import GraphError


def _support(proj):
    nz = np.nonzero(np.abs(proj).sum(axis=(0, 1)))
    return nz[0].min(), nz[0].max() + 1, nz[1].min(), nz[1].max() + 1


@pytest.mark.parametrize("layer", ["up", "ln", "head"])
def test_projection_stays_in_the_reported_field(layer):
    graph, params = models.decoder_net()
    net = pydeconv.build(graph, params)
    x = models.random_input((1,) + tuple(graph["input"]["shape"]), 2)
    out, trace = net.forward(x, keep="all")
    act = trace.activation(layer)
    seen = 0
    for y in range(act.shape[2]):
        for xx in range(act.shape[3]):
            start = np.zeros_like(act)
            start[0, :, y, xx] = 1.0
            proj = net.project(trace, layer, at=start, rule="backprop")
            if not np.any(proj):
                continue
            top, left, bottom, right = image.receptive_field(net, layer, y, xx)
            y0, y1, x0, x1 = _support(proj)
            assert top <= y0 and y1 <= bottom and left <= x0 and x1 <= right, (layer, y, xx)
            seen += 1
    assert seen == act.shape[2] * act.shape[3]


def test_upsampling_the_image_reports_the_whole_image():
    """A stride-2 transposed conv straight on the image: its outputs are half a pixel apart, which
    no integer field stride states; the field is then the whole image."""
    graph, params = models.single_layer(
        "conv_transpose2d",
        (3, 5, 7),
        {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]},
    )
    net = pydeconv.build(graph, params)
    info = [li for li in net.info() if li["name"] == "conv_transpose2d"][0]
    assert info["rf_size"] == (5, 7)


def _one(kind, shape, attrs, params):
    layer = {
        "name": "L1",
        "kind": kind,
        "inputs": ["x"],
        "attrs": attrs,
        "params": {k: list(v.shape) for k, v in params.items()},
    }
    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "x", "shape": list(shape)},
        "layers": [layer],
    }
    return pydeconv.build(graph, {f"L1/{k}": v for k, v in params.items()})


W = np.full
BAD = [
    # (id, kind, input, attrs, params, the field the error names)
    ("convt_op_ge_stride", "conv_transpose2d", (3, 5, 5), {"stride": [2, 2], "output_padding": [2]},
     {"weight": W((3, 4, 3, 3), 0.1, np.float32)}, "output_padding"),
    ("convt_op_stride1", "conv_transpose2d", (3, 5, 5), {"output_padding": [0, 1]},
     {"weight": W((3, 4, 3, 3), 0.1, np.float32)}, "output_padding"),
    ("convt_weight_in", "conv_transpose2d", (3, 5, 5), {},
     {"weight": W((4, 4, 3, 3), 0.1, np.float32)}, "weight"),
    ("convt_weight_rank", "conv_transpose2d", (3, 5, 5), {},
     {"weight": W((3, 36), 0.1, np.float32)}, "weight"),
    ("convt_groups", "conv_transpose2d", (3, 5, 5), {"groups": 2},
     {"weight": W((3, 4, 3, 3), 0.1, np.float32)}, "groups"),
    ("convt_kernel_size", "conv_transpose2d", (3, 5, 5), {"kernel_size": [2, 2]},
     {"weight": W((3, 4, 3, 3), 0.1, np.float32)}, "kernel_size"),
    ("convt_bias", "conv_transpose2d", (3, 5, 5), {"groups": 3},
     {"weight": W((3, 2, 3, 3), 0.1, np.float32), "bias": W((2,), 0.1, np.float32)}, "bias"),
    ("convt_no_output", "conv_transpose2d", (3, 1, 1), {"padding": [1, 1, 1, 1]},
     {"weight": W((3, 4, 1, 1), 0.1, np.float32)}, "padding"),
    ("ln_scale", "layer_norm", (3, 5, 5), {}, {"scale": W((4,), 1.0, np.float32)}, "scale"),
    ("ln_bias", "layer_norm", (3, 5, 5), {},
     {"scale": W((3,), 1.0, np.float32), "bias": W((3, 1), 0.0, np.float32)}, "bias"),
    ("ln_eps_zero", "layer_norm", (3, 5, 5), {"epsilon": 0.0},
     {"scale": W((3,), 1.0, np.float32)}, "epsilon"),
]  # fmt: skip


@pytest.mark.parametrize("cid,kind,shape,attrs,params,field", BAD, ids=[b[0] for b in BAD])
def test_bad_specs_name_the_layer_and_field(cid, kind, shape, attrs, params, field):
    with pytest.raises(GraphError) as info:
        _one(kind, shape, attrs, params)
    msg = str(info.value)
    assert "'L1'" in msg and kind in msg and field in msg, msg


def test_layer_norm_rank2_input_refused():
    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "x", "shape": [3, 2, 2]},
        "layers": [
            {"name": "f", "kind": "flatten", "inputs": ["x"]},
            {"name": "L1", "kind": "layer_norm", "inputs": ["f"], "params": {"scale": [12]}},
        ],
    }
    with pytest.raises(GraphError, match="'L1'.*layer_norm.*N, C, H, W"):
        pydeconv.build(graph, {"L1/scale": np.ones(12, np.float32)})
