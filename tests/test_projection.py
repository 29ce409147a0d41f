"""Projections through whole tiny models (ZFNet-like chain, a DAG with add/concat/residuals)
against the NumPy float64 reference, finite differences, and the engine's own invariants."""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest

import pydeconv

MODELS = {"zfnet": models.zfnet_like, "dag": models.small_dag}


class Setup:
    """One model, a batch of two inputs, the engine's trace and npref's forward of the same
    input."""

    def __init__(self, name):
        self.graph, self.params = MODELS[name]()
        self.net = pydeconv.build(self.graph, self.params)
        self.x = models.random_input((2,) + tuple(self.graph["input"]["shape"]), 21)
        self.out, self.trace = self.net.forward(self.x)
        self.acts, self.switches = npref.forward(self.graph, self.params, self.x)

    def ref(self, layer, channel, at, rule):
        start = npref.start_signal(self.acts[layer], channel, at)
        return npref.project(self.graph, self.params, self.acts, self.switches, layer, start, rule)


_SETUPS = {}


def setup_of(name):
    if name not in _SETUPS:
        _SETUPS[name] = Setup(name)
    return _SETUPS[name]


def _layers(name):
    graph, _ = MODELS[name]()
    return [(name, layer["name"]) for layer in graph["layers"]]


ALL_LAYERS = _layers("zfnet") + _layers("dag")
LAYER_IDS = [f"{m}-{layer}" for m, layer in ALL_LAYERS]


@pytest.mark.parametrize("model", MODELS)
def test_forward_matches_reference(model):
    s = setup_of(model)
    for name in s.net.layers:
        npref.assert_close(s.trace.activation(name), s.acts[name], err_msg=name)
    for name, ref in s.switches.items():
        np.testing.assert_array_equal(s.trace.switches(name), ref, err_msg=name)


def _starts(act, channel):
    """Every form of `at` for one channel: "max", "map", the centre position (rank 4 only) and an
    explicit random array of the layer's shape."""
    starts = [("max", "max"), ("map", "map")]
    if act.ndim == 4:
        starts.append(("position", (act.shape[2] // 2, act.shape[3] // 2)))
    rng = np.random.default_rng(channel)
    starts.append(("array", rng.standard_normal(act.shape).astype(np.float32)))
    return starts


@pytest.mark.parametrize("rule", npref.RULES)
@pytest.mark.parametrize("model,layer", ALL_LAYERS, ids=LAYER_IDS)
def test_project_every_layer(model, layer, rule):
    s = setup_of(model)
    act = s.acts[layer]
    channel = (len(layer) * 7) % act.shape[1]  # some channel other than always the first
    for form, at in _starts(act, channel):
        got = s.net.project(s.trace, layer, channel=channel, at=at, rule=rule)
        assert got.dtype == np.float32
        npref.assert_close(got, s.ref(layer, channel, at, rule), err_msg=f"at={form}")


# A handful of layers per model, including ones whose gradient passes pools, LRN, softmax, concat.
FD_LAYERS = [
    ("zfnet", "lrn1"),
    ("zfnet", "pool2"),
    ("zfnet", "relu4"),
    ("zfnet", "prob"),
    ("dag", "cat1"),
    ("dag", "add2"),
    ("dag", "fc"),
]


@pytest.mark.parametrize("model,layer", FD_LAYERS, ids=[f"{m}-{layer}" for m, layer in FD_LAYERS])
def test_backprop_matches_finite_differences(model, layer):
    """backprop from a start signal s is the gradient of <f_layer(x), s>; check a few pixels."""
    s = setup_of(model)
    start = np.random.default_rng(9).standard_normal(s.acts[layer].shape).astype(np.float32)
    got = s.net.project(s.trace, layer, at=start, rule="backprop")
    x = s.x.astype(np.float64)
    rng = np.random.default_rng(10)
    eps = 1e-6
    fds = []
    pixels = [tuple(int(rng.integers(0, d)) for d in x.shape) for _ in range(6)]
    for p in pixels:
        plus, minus = x.copy(), x.copy()
        plus[p] += eps
        minus[p] -= eps
        f_plus = npref.forward(s.graph, s.params, plus)[0][layer]
        f_minus = npref.forward(s.graph, s.params, minus)[0][layer]
        fds.append(np.sum((f_plus - f_minus) * start) / (2 * eps))
    npref.assert_close(np.array([got[p] for p in pixels]), np.array(fds))


@pytest.mark.parametrize("rule", npref.RULES)
@pytest.mark.parametrize("at", ["max", "map"])
@pytest.mark.parametrize("model,layer", [("zfnet", "conv2"), ("zfnet", "fc6"), ("dag", "add1")])
def test_multi_channel_is_stack_of_single(model, layer, at, rule):
    s = setup_of(model)
    channels = [0, 3, 5]
    many = s.net.project(s.trace, layer, channel=channels, at=at, rule=rule)
    assert many.shape == (2, len(channels)) + s.x.shape[1:]
    for k, c in enumerate(channels):
        one = s.net.project(s.trace, layer, channel=c, at=at, rule=rule)
        npref.assert_close(many[:, k], one, rtol=1e-5, atol_scale=1e-6, err_msg=f"channel {c}")
        npref.assert_close(many[:, k], s.ref(layer, c, at, rule), err_msg=f"channel {c} vs npref")


@pytest.mark.parametrize("rule", npref.RULES)
@pytest.mark.parametrize("model", MODELS)
def test_batch_equals_samples_alone(model, rule):
    s = setup_of(model)
    layer = s.net.layers[-3]
    both = s.net.project(s.trace, layer, channel=1, at="max", rule=rule)
    for n in range(2):
        _, trace = s.net.forward(s.x[n : n + 1])
        alone = s.net.project(trace, layer, channel=1, at="max", rule=rule)
        npref.assert_close(
            both[n : n + 1], alone, rtol=1e-5, atol_scale=1e-6, err_msg=f"sample {n}"
        )


@pytest.mark.parametrize("rule", npref.RULES)
@pytest.mark.parametrize("model", MODELS)
def test_keep_minimal_gives_identical_projections(model, rule):
    """Projections need only switches and ReLU masks, so a trace that keeps the minimum must give
    exactly the same result as one that keeps every activation."""
    s = setup_of(model)
    _, minimal = s.net.forward(s.x, keep="minimal")
    for layer in s.net.layers:
        start = np.random.default_rng(3).standard_normal(s.acts[layer].shape).astype(np.float32)
        full = s.net.project(s.trace, layer, at=start, rule=rule)
        np.testing.assert_array_equal(
            s.net.project(minimal, layer, at=start, rule=rule), full, err_msg=layer
        )


def test_deconvnet_ignores_relu_masks():
    """deconvnet rectifies the signal itself, so two inputs whose ReLU masks differ give the same
    projection of the same start signal, while guided backprop (which uses the masks) does not."""
    graph, params = models.head_net()
    net = pydeconv.build(graph, params)
    x = models.random_input((1,) + tuple(graph["input"]["shape"]), 1)
    start = np.ones((1, 7), dtype=np.float32)
    _, ta = net.forward(x)
    _, tb = net.forward(-x)
    assert not np.array_equal(ta.activation("fc1") > 0, tb.activation("fc1") > 0)
    da = net.project(ta, "relu", at=start, rule="deconvnet")
    np.testing.assert_array_equal(da, net.project(tb, "relu", at=start, rule="deconvnet"))
    guided = [net.project(t, "relu", at=start, rule="guided") for t in (ta, tb)]
    assert not (np.array_equal(da, guided[0]) and np.array_equal(da, guided[1]))


@pytest.mark.parametrize("model", MODELS)
def test_threads_agree_and_runs_repeat(model):
    s = setup_of(model)
    layer = s.net.layers[len(s.net.layers) // 2]
    results = {}
    for threads in (1, 2):
        runs = []
        for _ in range(2):
            out, trace = s.net.forward(s.x, threads=threads)
            proj = s.net.project(
                trace, layer, channel=[0, 1], at="map", rule="guided", threads=threads
            )
            runs.append((out, proj))
        for a, b in zip(runs[0], runs[1]):
            np.testing.assert_array_equal(a, b, err_msg=f"repeat at {threads} threads")
        results[threads] = runs[0]
    for a, b in zip(results[1], results[2]):
        npref.assert_close(a, b.astype(np.float64), rtol=1e-5)
