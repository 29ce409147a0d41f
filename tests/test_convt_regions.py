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
