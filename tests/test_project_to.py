"""Projections that stop at a layer: ``net.project(..., to=LAYER)`` returns the signal at that
layer's output (issue 15, section 1: relevance needs it).

- backprop, guided and deconvnet to L against torch autograd's gradient with respect to L's
  output on the torch twins of tests/test_crosscheck.py (with the rule's ReLUs);
- every rule: projecting to L and continuing from L with ``at=<that array>`` gives the full
  projection (bit for bit on the chain and the DAG; to float tolerance on the Winograd-sized
  VGG-like net, where the continued projection's kernels choose by smaller regions);
- shapes for one channel, a list, a batch, a linear layer; chunks under max_memory; errors.
"""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest

import pydeconv
from pydeconv.errors import GraphError, LayerNotFoundError, PydeconvError

torch = pytest.importorskip("torch")
from test_crosscheck import MODELS, _t, torch_forward  # noqa: E402

RULES = ("deconvnet", "guided", "backprop")
# (model, start layer, stop layer): chains, a max pool and an LRN on the way, a linear head, the
# DAG's branches (relu1 feeds three layers; conv_c has a path around it through avg2).
PAIRS = [
    ("zfnet", "conv4", "pool2"),
    ("zfnet", "relu4", "conv1"),
    ("zfnet", "fc7", "relu3"),
    ("zfnet", "prob", "flatten"),
    ("dag", "relu3", "relu1"),
    ("dag", "relu3", "conv_c"),
    ("dag", "fc", "cat1"),
    ("dag", "add1", "conv_b"),
]
IDS = [f"{m}-{a}-to-{b}" for m, a, b in PAIRS]
# The pairs where every path down from the start layer passes the stop layer: only there does
# continuing from it give the whole projection (elsewhere the paths around it are missing).
CUTS = [p for p in PAIRS if p[0] == "zfnet" or p[2] == "relu1"]

_NETS: dict = {}


def _case(name):
    if name not in _NETS:
        graph, params = MODELS[name]()
        net = pydeconv.build(graph, params)
        x = models.random_input((2,) + net.input_shape, 17)
        _, trace = net.forward(x)
        _NETS[name] = (graph, params, net, x, trace)
    return _NETS[name]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("model,layer,to", PAIRS, ids=IDS)
def test_stop_matches_torch_autograd_at_that_layer(model, layer, to, rule):
    """The gradient of <start, layer's output> with respect to ``to``'s output, the rule's ReLUs
    on the way (plain ReLUs for backprop: the plain gradient)."""
    graph, params, net, x, trace = _case(model)
    start = (
        np.random.default_rng(len(layer + to))
        .standard_normal(trace.activation(layer).shape)
        .astype(np.float32)
    )
    got = net.project(trace, layer, at=start, rule=rule, to=to)
    acts, _ = torch_forward(graph, params, _t(x).requires_grad_(True), rule)
    (want,) = torch.autograd.grad(acts[layer], acts[to], _t(start))
    npref.assert_close(got, want.numpy(), err_msg=f"{rule} {layer} -> {to}")


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("model,layer,to", CUTS, ids=[f"{m}-{a}-to-{b}" for m, a, b in CUTS])
def test_to_then_on_is_the_full_projection(model, layer, to, rule):
    _, _, net, _, trace = _case(model)
    channels = [0, 1, 3]
    mid = net.project(trace, layer, channel=channels, rule=rule, to=to)
    full = net.project(trace, layer, channel=channels, rule=rule)
    for k in range(len(channels)):
        rest = net.project(trace, to, at=np.ascontiguousarray(mid[:, k]), rule=rule)
        np.testing.assert_array_equal(rest, full[:, k], err_msg=f"{rule} channel {channels[k]}")


@pytest.mark.parametrize("rule", RULES)
def test_to_then_on_vgg_like_to_float_tolerance(rule, kernels):
    """VGG-like convs take the Winograd paths; the continued projection starts from a signal
    whose non-zero box is smaller than the region the full walk carried there, so its kernels
    may choose differently: equal to float rounding."""
    graph, params = models.vgg_like()
    net = pydeconv.build(graph, params)
    _, trace = net.forward(models.random_input((2,) + net.input_shape, 5))
    for layer, to in (("conv2_3", "pool1"), ("pool2", "relu2_1"), ("conv2_2", "conv1_1")):
        mid = net.project(trace, layer, channel=[2, 7], at="max", rule=rule, to=to)
        full = net.project(trace, layer, channel=[2, 7], rule=rule)
        for k in range(2):
            rest = net.project(trace, to, at=np.ascontiguousarray(mid[:, k]), rule=rule)
            npref.assert_close(rest, full[:, k], err_msg=f"{layer} -> {to}")


def test_shapes():
    _, _, net, _, trace = _case("zfnet")
    n = trace.batch
    c, h, w = net.layer_info("pool2")["shape"]
    assert net.project(trace, "conv4", channel=1, to="pool2").shape == (n, c, h, w)
    assert net.project(trace, "conv4", channel=[1, 2, 5], to="pool2").shape == (n, 3, c, h, w)
    assert net.project(trace, "prob", channel=[0, 4], to="fc6").shape == (n, 2, 20)
    assert net.project(trace, "prob", channel=3, to="fc7", rule="backprop").shape == (n, 10)
    start = np.zeros(trace.activation("conv4").shape, np.float32)
    assert net.project(trace, "conv4", at=start, to="lrn1").shape == (n, 8) + tuple(
        net.layer_info("lrn1")["shape"][1:]
    )
    # aliases of either layer work
    assert net.project(trace, "conv4", channel=0, at=(1, 1), to="pool2").dtype == np.float32


def test_to_the_start_layer_is_the_start_signal():
    _, _, net, _, trace = _case("zfnet")
    got = net.project(trace, "conv3", channel=[4, 2], at="max", to="conv3")
    act = trace.activation("conv3")
    for k, ch in enumerate((4, 2)):
        want = np.zeros_like(act)
        for n in range(act.shape[0]):
            y, x = np.unravel_index(np.argmax(act[n, ch]), act.shape[2:])
            want[n, ch, y, x] = act[n, ch, y, x]
        np.testing.assert_array_equal(got[:, k], want)
    start = np.random.default_rng(0).standard_normal(act.shape).astype(np.float32)
    np.testing.assert_array_equal(net.project(trace, "conv3", at=start, to="conv3"), start)


@pytest.mark.parametrize("rule", RULES)
def test_chunks_give_the_same_bits(rule):
    _, _, net, _, trace = _case("zfnet")
    channels = list(range(16))
    whole = net.project(trace, "relu4", channel=channels, rule=rule, to="pool1")
    per = net._core.projection_bytes_per_sample("relu4", "pool1")
    assert 0 < per < net._core.projection_bytes_per_sample("relu4")
    calls = []
    parts = net.project(
        trace,
        "relu4",
        channel=channels,
        rule=rule,
        to="pool1",
        max_memory=per * trace.batch * 3,
        progress=lambda done, total: calls.append((done, total)),
    )
    np.testing.assert_array_equal(parts, whole)
    assert calls == [(min(16, j), 16) for j in range(3, 19, 3)]


def test_minimal_trace():
    _, _, net, x, trace = _case("zfnet")
    _, small = net.forward(x, keep=["conv4"])
    for rule in RULES:
        np.testing.assert_array_equal(
            net.project(small, "conv4", channel=[0, 3], rule=rule, to="relu1"),
            net.project(trace, "conv4", channel=[0, 3], rule=rule, to="relu1"),
        )


def test_errors_name_both_layers():
    _, _, net, _, trace = _case("zfnet")
    with pytest.raises(GraphError, match="'conv2'.*'conv4'"):
        net.project(trace, "conv2", channel=0, to="conv4")  # runs after the start
    _, _, dag, _, dtrace = _case("dag")
    with pytest.raises(GraphError, match="'bn_b'.*'conv_a'"):
        dag.project(dtrace, "bn_b", channel=0, to="conv_a")  # a branch it never reaches
    with pytest.raises(LayerNotFoundError, match="conv44"):
        net.project(trace, "conv4", channel=0, to="conv44")
    with pytest.raises(LayerNotFoundError):
        net.project(trace, "conv4", channel=0, to="")
    with pytest.raises(PydeconvError):
        net.project(trace, "conv4", channel=99, to="pool2")


def test_cli_writes_the_signal(tmp_path, capsys):
    from pydeconv.cli import main

    graph, params = MODELS["zfnet"]()
    graph["preprocess"] = {"size": [37, 37], "channel_order": "RGB", "scale": 1 / 255}
    net = pydeconv.build(graph, params)
    net.save(str(tmp_path / "tiny.npz"))
    rng = np.random.default_rng(2)
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (37, 37, 3), dtype=np.uint8), "RGB").save(
        tmp_path / "img.png"
    )
    out = tmp_path / "g.npy"
    argv = ["project", str(tmp_path / "tiny.npz"), str(tmp_path / "img.png"), "--layer", "conv4"]
    rc = main([*argv, "--channel", "3", "7", "--rule", "backprop", "--to", "pool2", "-o", str(out)])
    assert rc == 0 and "pool2" in capsys.readouterr().out
    got = np.load(out)
    x = pydeconv.image.load(tmp_path / "img.png", net)
    _, trace = net.forward(x)
    want = net.project(trace, "conv4", channel=[3, 7], rule="backprop", to="pool2")[0]
    np.testing.assert_array_equal(got, want)
    assert got.shape == (2,) + tuple(net.layer_info("pool2")["shape"])
    assert main([*argv, "--channel", "3", "--to", "pool2", "-o", str(tmp_path / "g.png")]) != 0
    assert ".npy" in capsys.readouterr().err
    assert main([*argv, "--channel", "3", "--to", "fc6", "-o", str(tmp_path / "h.npy")]) != 0
    err = capsys.readouterr().err
    assert "'conv4'" in err and "'fc6'" in err and not (tmp_path / "h.npy").exists()
