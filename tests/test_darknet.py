"""Darknet import end to end: forward against OpenCV's Darknet reader, projections, convert, CLI.

The nets are written by the tests (tests/darknet_files.py: yolov3-tiny- and yolov4-tiny-shaped
cfgs, and one with the other sections and activations) with seeded weights in both header
versions. OpenCV (``cv2.dnn.readNetFromDarknet``, opencv-python-headless 4.x) reads the same two
files on its own; every Darknet layer's output is compared, the head convolutions included.
OpenCV runs its batch norm, activations and pools in place, so only the last layer of each
Darknet layer (the activation, or the convolution when linear) can be asked of it.
"""

from __future__ import annotations

import darknet_files as df
import numpy as np
import pytest

import pydeconv
from pydeconv.cli import main
from pydeconv.darknet import import_darknet, yolo_heads
from pydeconv.net import RULES

SIZES = [(64, 64), (64, 48)]  # (width, height): square, and one where H and W differ


def opencv_names(sections, names):
    """{pydeconv layer (or alias): OpenCV layer} for each Darknet layer's final output."""
    out = {}
    for i, sec in enumerate(sections):
        kind = sec["_kind"]
        if kind == "convolutional":
            mine, theirs = f"conv_{i}", (f"bn_{i}" if sec.get("batch_normalize") else f"conv_{i}")
        elif kind == "maxpool":
            mine, theirs = f"maxpool_{i}", f"pool_{i}"
        elif kind in ("shortcut", "upsample"):
            mine = theirs = f"{kind}_{i}"
        elif kind == "route":
            mine = f"route_{i}"
            theirs = next(n for n in (f"concat_{i}", f"slice_{i}", f"identity_{i}") if n in names)
        elif kind == "connected":
            mine, theirs = f"connected_{i}", f"fullyConnected_{i}"
        elif kind in ("avgpool", "softmax"):
            mine = theirs = f"{kind}_{i}"
        elif kind in ("dropout", "cost"):
            mine, theirs = f"{kind}_{i}", f"identity_{i}"
        else:
            continue  # [yolo]: OpenCV decodes there; its input is compared
        weighted = kind in ("convolutional", "connected")
        act = sec.get("activation", "logistic" if weighted else "linear")
        if act != "linear":
            # OpenCV names an activation by the next layer's index: take the layer after.
            mine, theirs = f"{act}_{i}", names[names.index(theirs) + 1]
        out[mine] = theirs
    return out


def assert_close(got, ref, what):
    scale = max(1.0, float(np.abs(ref).max()))
    diff = float(np.abs(got - ref).max())
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert diff <= 1e-4 * scale, f"{what}: max abs difference {diff:g} (scale {scale:g})"
    return diff


def opencv_forward(cv2, cfg, weights, x, wanted):
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = list(net.getLayerNames())
    pairs = opencv_names(wanted, names)
    net.setInput(x)
    outs = net.forward(list(pairs.values()))
    return {mine: out for mine, out in zip(pairs, outs)}


@pytest.mark.parametrize("version", [(0, 1, 0), (0, 2, 0)], ids=["v0.1", "v0.2"])
@pytest.mark.parametrize("size", SIZES, ids=["square", "wide"])
@pytest.mark.parametrize("name", list(df.NETS))
def test_forward_matches_opencv(tmp_path, name, size, version):
    cv2 = pytest.importorskip("cv2")
    sections = df.NETS[name]
    width, height = size
    cfg, weights = df.write(tmp_path, name, sections, version, seed=7, width=width, height=height)
    net = pydeconv.load(cfg, weights=weights)
    x = np.random.default_rng(1).uniform(0, 1, (2, 3, height, width)).astype(np.float32)
    out, trace = net.forward(x)
    ref = opencv_forward(cv2, cfg, weights, x, sections)
    assert len(ref) >= 9
    for layer, want in ref.items():
        assert_close(trace.activation(layer), want, f"{name} {layer}")
    heads = [h["layer"] for h in yolo_heads(net.graph)]
    if heads:  # the graph outputs are the raw head convolutions, by name
        assert sorted(out) == sorted(heads) == sorted(net.outputs)
        for head in heads:
            assert_close(out[head], ref[head], f"{name} head {head}")
    else:
        assert_close(out, ref[net.outputs[0]], f"{name} output")


@pytest.mark.parametrize("name", list(df.CLASSIFIERS))
def test_classifiers_match_opencv(tmp_path, name):
    cv2 = pytest.importorskip("cv2")
    sections = df.CLASSIFIERS[name]
    cfg, weights = df.write(tmp_path, name, sections, seed=9, width=32, height=32)
    net = pydeconv.load(cfg, weights=weights)
    x = np.random.default_rng(3).uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    out, trace = net.forward(x)
    ref = opencv_forward(cv2, cfg, weights, x, sections)
    for layer, want in ref.items():
        got = trace.activation(layer)
        assert_close(got.reshape(want.shape), want, f"{name} {layer}")
    assert out.shape == (2, 5) if name == "classifier" else out.shape == (2, 6, 1, 1)
    np.testing.assert_allclose(out.reshape(2, -1).sum(axis=1), 1, rtol=1e-5)  # the softmax
    for rule in RULES:
        p = net.project(trace, net.outputs[0], channel=[1, 2], at="max", rule=rule)
        assert p.shape == (2, 2, 3, 32, 32) and np.isfinite(p).all() and p.any(), rule


def test_input_size_from_preprocess_matches_opencv(tmp_path):
    """A fully convolutional Darknet net runs at another size, as OpenCV's reader does."""
    cv2 = pytest.importorskip("cv2")
    cfg, weights = df.write(tmp_path, "v4", df.V4_TINY, seed=3)
    net = pydeconv.load(cfg, weights=weights, preprocess={"size": [32, 96]})
    assert net.input_shape == (3, 32, 96)
    x = np.random.default_rng(2).uniform(0, 1, (1, 3, 32, 96)).astype(np.float32)
    out, _ = net.forward(x)
    ref = opencv_forward(cv2, cfg, weights, x, df.V4_TINY)
    for head, got in out.items():
        assert_close(got, ref[head], head)


def darknet_maxpool(x, size, stride, padding):
    """Darknet's forward_maxpool_layer, literally: origin -padding/2, -FLT_MAX outside."""
    n, c, h, w = x.shape
    oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    out = np.full((n, c, oh, ow), -np.finfo(np.float32).max, np.float64)
    for i in range(oh):
        for j in range(ow):
            for dy in range(size):
                for dx in range(size):
                    y, xx = i * stride - padding // 2 + dy, j * stride - padding // 2 + dx
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, y, xx])
    return out


@pytest.mark.parametrize("size, stride, padding", [(2, 1, 5), (3, 2, 4), (2, 2, 1), (3, 1, 2)])
def test_maxpool_padding_rule(tmp_path, size, stride, padding):
    """Darknet's pool after a ReLU conv (OpenCV reads Darknet's "relu" as leaky, so NumPy is the
    reference here), including paddings past the window (a -FLT_MAX pad layer)."""
    secs = [
        df.conv(4, 3, act="relu"),
        df.section("maxpool", size=size, stride=stride, padding=padding),
    ]
    cfg, weights = df.write(tmp_path, "pool", secs, width=9, height=7)
    net = pydeconv.load(cfg, weights=weights)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 7, 9)).astype(np.float32)
    out, trace = net.forward(x)
    want = darknet_maxpool(trace.activation("relu_0").astype(np.float64), size, stride, padding)
    assert_close(out, want, "maxpool_1")
    grads = [net.project(trace, "maxpool_1", channel=1, rule=rule) for rule in RULES]
    assert all(np.isfinite(g).all() and g.any() for g in grads)


RECTIFYING = {"relu", "leaky_relu", "mish", "silu"}  # docs/PROJECTION.md's rectifying kinds


def torch_twin(graph, params, x, rule, torch):
    """The graph in PyTorch (float64), with each rectifying activation's backward replaced by
    the rule's (docs/PROJECTION.md: deconvnet relu(g), guided relu(g) * f'(x), backprop
    g * f'(x)); everything else goes back by autograd's exact gradient. Returns every layer's
    output."""
    F = torch.nn.functional

    def act_fn(kind, attrs):
        return {
            "relu": F.relu,
            "leaky_relu": lambda v: F.leaky_relu(v, attrs.get("alpha", 0.01)),
            "mish": F.mish,
            "silu": F.silu,
        }[kind]

    class Rectify(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v, kind, attrs):
            ctx.save_for_backward(v)
            ctx.fn = act_fn(kind, attrs)
            return ctx.fn(v)

        @staticmethod
        def backward(ctx, g):
            (v,) = ctx.saved_tensors
            with torch.enable_grad():
                leaf = v.detach().requires_grad_()
                (slope,) = torch.autograd.grad(ctx.fn(leaf).sum(), leaf)
            if rule == "deconvnet":
                return g.clamp(min=0), None, None
            if rule == "guided":
                return g.clamp(min=0) * slope, None, None
            return g * slope, None, None

    acts = {graph["input"]["name"]: x}
    for layer in graph["layers"]:
        kind, a = layer["kind"], layer.get("attrs", {})
        ins = [acts[i] for i in layer["inputs"]]
        if kind in ("conv2d", "max_pool2d", "pad"):
            t, left, b, r = a["padding"]
            value = a.get("value", 0.0) if kind != "max_pool2d" else float("-inf")
            v = F.pad(ins[0], (left, r, t, b), value=value)
        if kind == "conv2d":
            w = torch.from_numpy(params[f"{layer['name']}/weight"].astype(np.float64))
            bias = torch.from_numpy(params[f"{layer['name']}/bias"].astype(np.float64))
            y = F.conv2d(v, w, bias, stride=a["stride"], groups=a["groups"])
        elif kind == "max_pool2d":
            y = F.max_pool2d(v, a["kernel_size"], a["stride"])
        elif kind == "pad":
            y = v
        elif kind in RECTIFYING:
            y = Rectify.apply(ins[0], kind, a)
        elif kind == "sigmoid":
            y = torch.sigmoid(ins[0])
        elif kind == "upsample":
            y = F.interpolate(ins[0], scale_factor=tuple(a["scale"]), mode="nearest")
        elif kind == "slice":
            y = ins[0][:, a["start"] : a["end"]]
        elif kind == "concat":
            y = torch.cat(ins, 1)
        elif kind == "add":
            y = sum(ins[1:], ins[0])
        else:
            raise AssertionError(f"no twin for {kind}")
        acts[layer["name"]] = y
    return acts


@pytest.mark.parametrize("name", list(df.NETS))
def test_projections_match_a_torch_twin(tmp_path, name):
    """Every rule, from each head and from a trunk layer, against PyTorch autograd on a twin of
    the converted graph."""
    torch = pytest.importorskip("torch")
    cfg, weights = df.write(tmp_path, name, df.NETS[name], seed=5)
    net = pydeconv.load(cfg, weights=weights)
    graph, params = import_darknet(cfg, weights)
    x = np.random.default_rng(4).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    _, trace = net.forward(x)
    rng = np.random.default_rng(8)
    starts = net.outputs + [net.layers[len(net.layers) // 2]]
    for layer in starts:
        shape = (2,) + tuple(net.layer_info(layer)["shape"])
        start = (rng.normal(0, 1, shape) * (rng.uniform(0, 1, shape) < 0.05)).astype(np.float32)
        for rule in RULES:
            got = net.project(trace, layer, at=start, rule=rule)
            xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
            acts = torch_twin(graph, params, xt, rule, torch)
            acts[layer].backward(torch.from_numpy(start.astype(np.float64)))
            want = xt.grad.numpy()
            assert np.isfinite(got).all() and got.any(), (layer, rule)
            scale = float(np.abs(want).max())
            diff = float(np.abs(got - want).max())
            assert diff <= 1e-4 * scale, f"{name} {layer} {rule}: {diff:g} (scale {scale:g})"
        # one channel's strongest unit, the way a user asks (two channels in one batch)
        p = net.project(trace, layer, channel=[0, 5], at="max", rule="deconvnet")
        assert p.shape == (2, 2, 3, 64, 64) and np.isfinite(p).all() and p.any()


def test_convert_keeps_everything(tmp_path):
    cfg, weights = df.write(tmp_path, "v3", df.V3_TINY, seed=1)
    out = tmp_path / "v3.npz"
    net = pydeconv.convert(cfg, out, weights=weights, labels=["cat", "dog"])
    back = pydeconv.load(out)
    assert back.graph == net.graph
    assert back.labels == ["cat", "dog"]
    assert back.metadata["darknet"]["yolo"][0]["layer"] == "conv_11"
    assert back.layer_info("yolo_12")["name"] == "conv_11"  # the head's name is an alias
    assert back.layer_info("route_13")["name"] == "leaky_9"
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    a, _ = net.forward(x)
    b, _ = back.forward(x)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    graph, params = import_darknet(cfg, weights)
    for key, value in params.items():
        np.testing.assert_array_equal(back.params[key], value)
    assert back.preprocess["scale"] == pytest.approx(1 / 255)
    assert back.preprocess["mean"] == [0.0] * 3 and back.preprocess["std"] == [1.0] * 3


def test_metadata_must_be_an_object(tmp_path):
    cfg, weights = df.write(tmp_path, "v3", df.V3_TINY)
    graph, params = import_darknet(cfg, weights)
    graph["metadata"] = [1, 2]
    with pytest.raises(pydeconv.GraphError, match="graph 'metadata' must be an object"):
        pydeconv.build(graph, params)


def table(text):
    """The layer table of ``pydeconv info``'s output (from its header row on)."""
    lines = text.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("name ")) :]


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_convert_and_info(tmp_path, capsys):
    cfg, weights = df.write(tmp_path, "v4", df.V4_TINY, seed=1)
    names = tmp_path / "two.names"
    names.write_text("cat\ndog\n")
    out = tmp_path / "v4.npz"
    rc, _, err = run(capsys, "convert", cfg, weights, out, "--labels", names)
    assert rc == 0, err
    assert "wrote" in err and out.is_file()
    assert pydeconv.load(out).labels == ["cat", "dog"]
    rc, text, _ = run(capsys, "info", out)
    assert rc == 0 and "route_3" in text and "slice" in text
    # on the cfg: the weights beside it are found; without them, the layer table only
    rc, with_weights, _ = run(capsys, "info", cfg)
    assert rc == 0 and table(with_weights) == table(text)
    weights.rename(tmp_path / "elsewhere.weights")
    rc, alone, err = run(capsys, "info", cfg)
    assert rc == 0 and "layer table only" in err
    assert table(alone) == table(text)
    rc, again, _ = run(capsys, "info", cfg, "--weights", tmp_path / "elsewhere.weights")
    assert rc == 0 and again == with_weights
    # convert without the weights: one error line naming the cfg
    rc, _, err = run(capsys, "convert", cfg, tmp_path / "b.npz")
    assert rc != 0 and "v4.cfg: a Darknet cfg needs its weights" in err
    rc, _, err = run(capsys, "convert", cfg, tmp_path / "elsewhere.weights", tmp_path / "b.npz")
    assert rc == 0, err
    rc, _, err = run(capsys, "convert", out, tmp_path / "x.weights", tmp_path / "c.npz")
    assert rc != 0 and "a WEIGHTS file goes with a Darknet .cfg only" in err
