"""Darknet import: the graph dicts it produces, its cfg parsing, and every refusal.

These run the pure-Python reader only (no engine): what a cfg becomes is checked layer by layer,
the weights layout against a writer in the tests (tests/darknet_files.py), and each malformed
cfg or weights file against the error it must raise, naming the file, the section and the key.
"""

from __future__ import annotations

import struct

import darknet_files as df
import numpy as np
import pytest

import pydeconv
from pydeconv.darknet import import_darknet, read_cfg, yolo_heads
from pydeconv.errors import GraphError, ModelFormatError, PydeconvError

FLT_MAX = float(np.finfo(np.float32).max)


def layers_by_name(graph):
    return {layer["name"]: layer for layer in graph["layers"]}


def test_v3tiny_graph(tmp_path):
    cfg, weights = df.write(tmp_path, "v3", df.V3_TINY, width=64, height=48)
    graph, params = import_darknet(cfg, weights)
    by = layers_by_name(graph)
    assert graph["name"] == "v3"
    assert graph["input"] == {"name": "input", "shape": [3, 48, 64]}
    assert graph["preprocess"] == {"size": [48, 64], "channel_order": "RGB", "scale": 1 / 255}
    assert [(name, by[name]["kind"]) for name in list(by)[:3]] == [
        ("conv_0", "conv2d"),
        ("leaky_0", "leaky_relu"),
        ("maxpool_1", "max_pool2d"),
    ]
    assert by["leaky_0"]["attrs"] == {"alpha": 0.1}
    # size 2 stride 2, Darknet's default padding size-1 = 1: all of it after (origin -1/2 = 0)
    assert by["maxpool_1"]["attrs"] == {
        "kernel_size": [2, 2],
        "stride": [2, 2],
        "padding": [0, 0, 1, 1],
    }
    assert by["maxpool_7"]["attrs"]["stride"] == [1, 1]  # the 13x13-keeping pool of yolov3-tiny
    assert by["conv_9"]["attrs"]["padding"] == [0, 0, 0, 0]  # pad=1 on a 1x1: size/2 = 0
    assert by["conv_8"]["attrs"]["padding"] == [1, 1, 1, 1]
    # [route] layers=-4 forwards leaky_9: no layer, an alias; [yolo] names its input
    assert "route_13" not in by and by["leaky_9"]["aliases"] == ["route_13"]
    assert by["conv_11"]["aliases"] == ["yolo_12"] and by["conv_18"]["aliases"] == ["yolo_19"]
    assert by["conv_14"]["inputs"] == ["leaky_9"]
    assert by["upsample_15"]["attrs"] == {"scale": [2, 2]}
    assert by["route_16"] == {
        "name": "route_16",
        "kind": "concat",
        "inputs": ["upsample_15", "leaky_4"],
    }
    assert "leaky_11" not in by and "leaky_18" not in by  # activation=linear: no layer
    assert graph["outputs"] == ["conv_11", "conv_18"]
    assert params["conv_0/weight"].shape == (8, 3, 3, 3) and params["conv_17/weight"].shape == (
        32,
        48,
        3,
        3,
    )
    assert all(a.dtype == np.float32 for a in params.values())
    heads = yolo_heads(graph)
    assert [h["name"] for h in heads] == ["yolo_12", "yolo_19"]
    assert heads[0] == {
        "name": "yolo_12",
        "layer": "conv_11",
        "classes": 2,
        "mask": [3, 4, 5],
        "anchors": [[81.0, 82.0], [135.0, 169.0], [344.0, 319.0]],
        "scale_x_y": 1.0,
        "new_coords": 0,
    }
    assert graph["metadata"]["darknet"]["weights"] == {"version": "0.2.0", "seen": 123456}
    assert graph["metadata"]["darknet"]["letter_box"] == 0


def test_v4tiny_graph_route_groups(tmp_path):
    cfg, weights = df.write(tmp_path, "v4", df.V4_TINY)
    graph, _ = import_darknet(cfg, weights)
    by = layers_by_name(graph)
    # groups=2 group_id=1 of leaky_2's 16 channels: the second half
    assert by["route_3"] == {
        "name": "route_3",
        "kind": "slice",
        "inputs": ["leaky_2"],
        "attrs": {"axis": 1, "start": 8, "end": 16},
    }
    assert by["conv_4"]["inputs"] == ["route_3"]
    assert by["route_6"]["inputs"] == ["leaky_5", "leaky_4"]
    assert by["route_8"]["inputs"] == ["leaky_2", "leaky_7"]
    assert by["route_18"]["inputs"] == ["upsample_17", "leaky_7"]
    assert by["conv_0"]["attrs"]["stride"] == [2, 2]
    assert [h["scale_x_y"] for h in yolo_heads(graph)] == [1.05, 1.05]
    assert yolo_heads(graph)[1]["anchors"] == [[23.0, 27.0], [37.0, 58.0], [81.0, 82.0]]


def test_mixed_graph(tmp_path):
    cfg, weights = df.write(tmp_path, "mixed", df.MIXED)
    graph, params = import_darknet(cfg, weights)
    by = layers_by_name(graph)
    kinds = {name: layer["kind"] for name, layer in by.items()}
    assert kinds["mish_0"] == "mish" and kinds["swish_1"] == "silu"
    assert kinds["logistic_3"] == "sigmoid" and kinds["leaky_6"] == "leaky_relu"
    assert by["conv_1"]["attrs"]["groups"] == 2 and params["conv_1/weight"].shape == (8, 4, 3, 3)
    assert by["shortcut_2"]["inputs"] == ["swish_1", "mish_0"]
    assert by["shortcut_6"]["inputs"] == ["leaky_5", "maxpool_4"]
    assert by["leaky_6"]["inputs"] == ["shortcut_6"]
    # size 3 stride 2, padding default 2: one before, one after
    assert by["maxpool_4"]["attrs"]["padding"] == [1, 1, 1, 1]
    assert by["maxpool_7"]["attrs"]["padding"] == [0, 0, 0, 0]
    assert graph["outputs"] == ["conv_8"]  # no [yolo]: the last layer
    assert yolo_heads(graph) == []


def test_batch_norm_folded_with_darknets_epsilon(tmp_path):
    """Darknet's inference batch norm: (x - mean) / (sqrt(var) + .000001) * scale + bias."""
    cfg, weights = df.write(tmp_path, "v3", df.V3_TINY, seed=4)
    _, params = import_darknet(cfg, weights)
    blobs = {(i, f): a.astype(np.float64) for i, f, a in df.blobs(df.V3_TINY, seed=4)}
    for i, sec in enumerate(df.V3_TINY):
        if sec["_kind"] != "convolutional":
            continue
        w, b = blobs[i, "weights"], blobs[i, "biases"]
        if sec.get("batch_normalize"):
            f = blobs[i, "scales"] / (np.sqrt(blobs[i, "rolling_variance"]) + 1e-6)
            w = w * f[:, None, None, None]
            b = b - blobs[i, "rolling_mean"] * f
        np.testing.assert_allclose(params[f"conv_{i}/weight"], w, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(params[f"conv_{i}/bias"], b, rtol=1e-6, atol=1e-7)


def test_classifier_graph(tmp_path):
    cfg, weights = df.write(tmp_path, "cls", df.CLASSIFIER, width=32, height=32)
    graph, params = import_darknet(cfg, weights)
    by = layers_by_name(graph)
    assert by["connected_5"] == {
        "name": "connected_5",
        "kind": "linear",
        "inputs": ["maxpool_4"],
        "params": {"weight": [12, 256], "bias": [12]},
    }
    assert by["leaky_5"]["inputs"] == ["connected_5"]
    assert by["connected_7"]["inputs"] == ["leaky_5"]  # dropout_6 is an alias
    assert by["leaky_5"]["aliases"] == ["dropout_6"] and by["relu_2"]["aliases"] == ["dropout_3"]
    assert by["softmax_8"] == {
        "name": "softmax_8",
        "kind": "softmax",
        "inputs": ["connected_7"],
        "aliases": ["cost_9"],
    }
    assert graph["outputs"] == ["softmax_8"]
    blobs = {(i, f): a for i, f, a in df.blobs(df.CLASSIFIER)}
    np.testing.assert_array_equal(params["connected_5/weight"], blobs[5, "weights"])
    np.testing.assert_array_equal(params["connected_7/bias"], blobs[7, "biases"])
    gap, _ = import_darknet(*df.write(tmp_path, "gap", df.CLASSIFIER_GAP, width=32, height=32))
    assert [layer["kind"] for layer in gap["layers"]][-2:] == ["global_avg_pool", "softmax"]


def test_connected_batch_norm_follows_its_weights(tmp_path):
    """Darknet stores a [connected] layer's batch norm after its weights (a convolution's
    before them) and folds it with the same formula."""
    cfg, weights = df.write(tmp_path, "fc", df.CONNECTED_BN, seed=3, width=32, height=32)
    _, params = import_darknet(cfg, weights)
    blobs = {(i, f): a.astype(np.float64) for i, f, a in df.blobs(df.CONNECTED_BN, seed=3)}
    f = blobs[1, "scales"] / (np.sqrt(blobs[1, "rolling_variance"]) + 1e-6)
    w = blobs[1, "weights"] * f[:, None]
    b = blobs[1, "biases"] - blobs[1, "rolling_mean"] * f
    np.testing.assert_allclose(params["connected_1/weight"], w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(params["connected_1/bias"], b, rtol=1e-6, atol=1e-7)


def test_classifier_refusals(tmp_path):
    w = df.weights_bytes(df.CLASSIFIER)
    kw = {"width": 32, "height": 32, "weights": w}
    bad = df.CLASSIFIER[:6] + [df.conv(4, 12)]
    raises(tmp_path, bad, GraphError, "section 6 [convolutional]", "is flat (N, C)", **kw)
    bad = df.CLASSIFIER[:3] + [df.section("softmax")]
    raises(tmp_path, bad, GraphError, "section 3 [softmax]", "16x16x16", "over channels", **kw)
    bad = edit(df.CLASSIFIER, 8, groups=2)
    raises(tmp_path, bad, GraphError, "section 8 [softmax]", "key 'groups'", **kw)
    bad = edit(df.CLASSIFIER, 3, probability=1)
    raises(tmp_path, bad, GraphError, "key 'probability'", "[0, 1)", **kw)
    bad = edit(df.CLASSIFIER, 3, dropblock=1)
    raises(tmp_path, bad, GraphError, "key 'dropblock'", **kw)
    bad = edit(df.CLASSIFIER, 5, outputs=3)
    raises(tmp_path, bad, GraphError, "key 'outputs'", "unknown key for [connected]", **kw)
    bad = edit(df.CLASSIFIER, 9, kind="sse")
    raises(tmp_path, bad, GraphError, "key 'kind'", "unknown key for [cost]", **kw)
    raises(
        tmp_path,
        df.CLASSIFIER_GAP[:2] + [df.section("avgpool", size=2)],
        GraphError,
        "key 'size'",
        "unknown key for [avgpool]",
        width=32,
        height=32,
    )


@pytest.mark.parametrize("version", [(0, 1, 0), (0, 2, 0), (1, 0, 0)])
def test_header_versions(tmp_path, version):
    """Version 0.1 stores `seen` in 4 bytes, 0.2 and later (major*10+minor >= 2) in 8."""
    cfg, weights = df.write(tmp_path, "v4", df.V4_TINY, version=version, seed=2)
    graph, params = import_darknet(cfg, weights)
    ref_cfg, ref_weights = df.write(tmp_path, "ref", df.V4_TINY, seed=2)
    _, ref = import_darknet(ref_cfg, ref_weights)
    assert params.keys() == ref.keys()
    for key in params:
        np.testing.assert_array_equal(params[key], ref[key])
    meta = graph["metadata"]["darknet"]["weights"]
    assert meta == {"version": ".".join(map(str, version)), "seen": 123456}
    size = len(df.header(version))
    assert size == (16 if version == (0, 1, 0) else 20)


def test_cfg_syntax_darknet_accepts(tmp_path):
    """Whitespace anywhere, # and ; comments, [conv]/[max] short names, CRLF line ends."""
    text = df.cfg_text(df.V3_TINY, width=32, height=32)
    text = text.replace("[convolutional]", "[conv]", 2).replace("[maxpool]", "[max]", 1)
    text = text.replace("filters=8", "  filters = 8 \t").replace("\n", "\r\n")
    text = "# a comment\n; another\n\n" + text
    cfg = tmp_path / "syntax.cfg"
    cfg.write_text(text)
    (tmp_path / "syntax.weights").write_bytes(df.weights_bytes(df.V3_TINY))
    graph, _ = import_darknet(cfg, tmp_path / "syntax.weights")
    ref_cfg, ref_w = df.write(tmp_path, "ref", df.V3_TINY, width=32, height=32)
    assert graph["layers"] == import_darknet(ref_cfg, ref_w)[0]["layers"]
    sections = read_cfg(cfg)
    assert [s.name for s in sections[:3]] == ["net", "convolutional", "maxpool"]
    assert sections[1].index == 0 and sections[1].options["filters"][0] == "8"


def test_size_override_and_labels(tmp_path):
    cfg, weights = df.write(tmp_path, "v3", df.V3_TINY)
    graph, _ = import_darknet(cfg, weights, preprocess={"size": [32, 96]}, labels=["a", "b"])
    assert graph["input"]["shape"] == [3, 32, 96] and graph["preprocess"]["size"] == [32, 96]
    assert graph["labels"] == ["a", "b"]
    with pytest.raises(GraphError, match=r"v3\.cfg: 3 labels given, the \[yolo\] heads have 2"):
        import_darknet(cfg, weights, labels=["a", "b", "c"])
    with pytest.raises(GraphError, match="size' must be two positive integers"):
        import_darknet(cfg, weights, preprocess={"size": [32]})


def test_maxpool_padding_past_the_window_uses_a_pad_layer(tmp_path):
    secs = [df.conv(4, 3, act="relu"), df.section("maxpool", size=2, stride=1, padding=5)]
    cfg, weights = df.write(tmp_path, "pool", secs, width=8, height=8)
    graph, _ = import_darknet(cfg, weights)
    by = layers_by_name(graph)
    # origin -5/2 = -2: 2 before, 3 after; 3 >= the window, so a -FLT_MAX pad layer first
    assert by["maxpool_1_pad"] == {
        "name": "maxpool_1_pad",
        "kind": "pad",
        "inputs": ["relu_0"],
        "attrs": {"padding": [2, 2, 3, 3], "value": -FLT_MAX},
    }
    assert by["maxpool_1"]["inputs"] == ["maxpool_1_pad"]
    assert by["maxpool_1"]["attrs"]["padding"] == [0, 0, 0, 0]
    assert by["relu_0"]["kind"] == "relu"


def test_cfg_only_gives_the_layer_table(tmp_path):
    cfg, _ = df.write(tmp_path, "v3", df.V3_TINY)
    graph, params = import_darknet(cfg, None)
    assert all(not a.any() for a in params.values())
    assert "weights" not in graph["metadata"]["darknet"]


# -- refusals --------------------------------------------------------------------------------


def raises(tmp_path, sections, cls, *words, weights=None, **cfg_kw):
    """Writes the cfg (and weights for it unless given) and checks the one error's words."""
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(sections if isinstance(sections, str) else df.cfg_text(sections, **cfg_kw))
    w = tmp_path / "bad.weights"
    if weights is None:
        weights = df.weights_bytes(sections) if not isinstance(sections, str) else b""
    w.write_bytes(weights)
    with pytest.raises(cls) as info:
        import_darknet(cfg, w)
    msg = str(info.value)
    for word in words:
        assert word in msg, (word, msg)
    return msg


def test_truncated_weights_name_the_layer(tmp_path):
    data = df.weights_bytes(df.V3_TINY)
    # cut inside section 8's weights: its biases, scales, means, variances are all there
    upto = len(df.header()) + 4 * sum(
        a.size for i, f, a in df.blobs(df.V3_TINY) if i < 8 or (i == 8 and f != "weights")
    )
    raises(
        tmp_path,
        df.V3_TINY,
        ModelFormatError,
        "bad.weights: the file is truncated",
        "section 8 [convolutional] (conv_8)'s weights",
        "(10 of 18432 floats present)",
        weights=data[: upto + 40],
    )
    raises(tmp_path, df.V3_TINY, ModelFormatError, "conv_0)'s biases", weights=df.header())
    raises(tmp_path, df.V3_TINY, ModelFormatError, "shorter than a Darknet", weights=b"\0" * 8)
    raises(
        tmp_path,
        df.V3_TINY,
        ModelFormatError,
        "shorter than its version 0.2 header (20 bytes)",
        weights=df.header()[:18],
    )


def test_oversized_and_inconsistent_weights(tmp_path):
    data = df.weights_bytes(df.V3_TINY)
    raises(
        tmp_path,
        df.V3_TINY,
        ModelFormatError,
        "bad.weights: the file has 8 bytes after the last layer's weights",
        "belong together",
        weights=data + b"\0" * 8,
    )
    # a version 0.2 file whose header claims 0.1: `seen` read as 4 bytes, 4 bytes left over
    old = struct.pack("<i", 0) + struct.pack("<i", 1) + data[8:]
    raises(tmp_path, df.V3_TINY, ModelFormatError, "4 bytes after the last layer's", weights=old)
    other = df.weights_bytes(df.V4_TINY)
    raises(tmp_path, df.V3_TINY, ModelFormatError, "bad.weights:", weights=other)
    raises(
        tmp_path,
        df.V3_TINY,
        ModelFormatError,
        "header version 1000.2.0 is not a Darknet weights version",
        weights=df.header((1000, 2, 0)) + data[20:],
    )
    nan = bytearray(data)
    nan[20 + 4 * 3 : 20 + 4 * 4] = np.float32(np.nan).tobytes()
    raises(
        tmp_path,
        df.V3_TINY,
        ModelFormatError,
        "conv_0)'s biases hold NaN or infinity (first at element 3)",
        weights=bytes(nan),
    )
    neg = bytearray(data)
    var0 = 20 + 4 * 8 * 3  # section 0: biases, scales, rolling_mean (8 each), then variances
    neg[var0 + 4 : var0 + 8] = np.float32(-0.5).tobytes()
    raises(
        tmp_path,
        df.V3_TINY,
        ModelFormatError,
        "bad.weights: section 0 [convolutional] (conv_0): rolling_variance of filter 1 is negative",
        weights=bytes(neg),
    )


def edit(sections, index, **keys):
    """A copy of ``sections`` with section ``index`` updated (a None value removes the key)."""
    out = [dict(s) for s in sections]
    out[index].update(keys)
    out[index] = {k: v for k, v in out[index].items() if v is not None}
    return out


@pytest.mark.parametrize(
    "index, keys, words",
    [
        (0, {"activation": "elu"}, ["section 0 [convolutional]", "key 'activation'", "'elu'"]),
        (0, {"activation": "Leaky"}, ["unsupported activation 'Leaky'"]),
        (0, {"filtres": 8}, ["key 'filtres'", "unknown key for [convolutional]"]),
        (0, {"dilation": 2}, ["key 'dilation'", "unknown key"]),
        (0, {"filters": "8.5"}, ["key 'filters'", "must be an integer, got '8.5'"]),
        (0, {"size": 0}, ["key 'size'", "must be >= 1, got 0"]),
        (0, {"batch_normalize": 2}, ["batch_normalize", "must be 0 or 1"]),
        (2, {"groups": 3}, ["section 2 [convolutional]", "3 groups do not divide"]),
        (1, {"size": 99, "padding": 0}, ["section 1 [maxpool]", "key 'size'", "does not fit"]),
        (13, {"layers": 13}, ["section 13 [route]", "key 'layers'", "refers to layer 13"]),
        (13, {"layers": -14}, ["refers to layer -14 (index -1)"]),
        (13, {"layers": -1}, ["refers to layer 12, a [yolo] head"]),
        (13, {"layers": "-4,x"}, ["comma-separated list of integers, got '-4,x'"]),
        (13, {"layers": None}, ["section 13 [route]", "key 'layers'", "is required"]),
        (16, {"layers": "-1, 6"}, ["differ in size", "upsample_15 is 16x16", "leaky_6 is 8x8"]),
        (13, {"groups": 2, "group_id": 2}, ["key 'group_id'", "must be below groups (2)"]),
        (15, {"stride": "2.5"}, ["section 15 [upsample]", "key 'stride'", "got '2.5'"]),
        (15, {"stride": None}, ["key 'stride'", "is required", "Darknet reads 2"]),
        (15, {"stride": -2}, ["key 'stride'", "positive integer"]),
        (15, {"scale": 2}, ["key 'scale'", "only 1 is supported"]),
        (12, {"classes": 3}, ["section 12 [yolo]", "has 21 channels", "need 24"]),
        (12, {"num": 5}, ["key 'anchors'", "holds 12 numbers; num=5 needs 10"]),
        (12, {"mask": "3,4,6"}, ["key 'mask'", "anchor index 0..5"]),
        (12, {"anchors": "1,2,x"}, ["key 'anchors'", "list of numbers"]),
        (12, {"jiter": 1}, ["key 'jiter'", "unknown key for [yolo]"]),
    ],
)
def test_bad_cfg_values(tmp_path, index, keys, words):
    # the original net's weights: a cfg is refused before its weights are read
    weights = df.weights_bytes(df.V3_TINY)
    raises(
        tmp_path, edit(df.V3_TINY, index, **keys), GraphError, "bad.cfg: ", *words, weights=weights
    )


def test_shortcut_refusals(tmp_path):
    raises(
        tmp_path,
        edit(df.MIXED, 2, **{"from": -3}),
        GraphError,
        "section 2 [shortcut]",
        "key 'from'",
        "refers to layer -3 (index -1)",
    )
    bad = df.MIXED[:5] + [df.section("shortcut", **{"from": 0})]
    raises(tmp_path, bad, GraphError, "adds mish_0 (8x64x64) to maxpool_4 (8x32x32)")
    raises(tmp_path, edit(df.MIXED, 2, alpha=0.5), GraphError, "key 'alpha'", "only 1")
    raises(tmp_path, edit(df.MIXED, 2, weights_type="per_channel"), GraphError, "'per_channel'")


def test_bad_sections_and_lines(tmp_path):
    raises(
        tmp_path,
        df.V3_TINY + [df.section("reorg", stride=2)],
        GraphError,
        "section 20 [reorg]",
        "unsupported section",
        "[convolutional], [maxpool]",
    )
    text = df.cfg_text(df.V3_TINY)
    raises(tmp_path, text.replace("[net]", "[convolutional]", 1), GraphError, "first section")
    raises(tmp_path, "width=3\n" + text, GraphError, "line 1", "before the first section")
    raises(
        tmp_path,
        text.replace("filters=8\n", "filters=8\nfilters=9\n", 1),
        GraphError,
        "section 0 [convolutional]",
        "key 'filters'",
        "given twice",
    )
    raises(tmp_path, text.replace("size=3", "size", 1), GraphError, "expected key=value")
    raises(tmp_path, text.replace("[maxpool]", "[maxpool", 1), GraphError, "malformed section")
    raises(tmp_path, text + "\n[net]\n", GraphError, "a second [net]")
    raises(tmp_path, "[net]\nwidth=8\nheight=8\nchannels=3\n", GraphError, "no layers")
    raises(tmp_path, text.replace("width=64\n", ""), GraphError, "[net]", "key 'width'")
    raises(tmp_path, text.replace("batch=1", "bacth=1"), GraphError, "[net]", "key 'bacth'")
    raises(tmp_path, text.replace("batch=1", "letter_box=2"), GraphError, "letter_box")
    cfg = tmp_path / "binary.cfg"
    cfg.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ModelFormatError, match="binary.cfg: the cfg is not text"):
        import_darknet(cfg, None)
    with pytest.raises(ModelFormatError, match="missing.cfg: cannot read the cfg"):
        import_darknet(tmp_path / "missing.cfg", None)


def test_load_finds_or_asks_for_the_weights(tmp_path):
    cfg = tmp_path / "alone.cfg"
    cfg.write_text(df.cfg_text(df.V3_TINY))
    with pytest.raises(ModelFormatError, match="alone.cfg: a Darknet cfg needs its weights"):
        pydeconv.load(cfg)
    with pytest.raises(PydeconvError, match="weights= is for Darknet .cfg files only"):
        pydeconv.load(tmp_path / "x.npz", weights=tmp_path / "x.weights")
    with pytest.raises(ModelFormatError, match="nope.weights: cannot read the weights"):
        pydeconv.load(cfg, weights=tmp_path / "nope.weights")


def test_weights_past_the_tensor_limit(tmp_path):
    """A cfg asking for more weights than max_tensor_bytes is refused before any is read or
    allocated (pydeconv info on a cfg alone allocates zeros)."""
    huge = edit(df.V3_TINY, 8, filters=1 << 24)
    cfg = tmp_path / "huge.cfg"
    cfg.write_text(df.cfg_text(huge))
    with pytest.raises(GraphError, match="huge.cfg: the layers hold .* max_tensor_bytes"):
        import_darknet(cfg, None)


def test_mutated_files_never_crash(tmp_path):
    """Random edits of a valid cfg and cuts of its weights: each is imported and built, or
    refused with one pydeconv error; nothing else escapes."""
    rng = np.random.default_rng(11)
    text = df.cfg_text(df.V4_TINY, width=32, height=32)
    data = df.weights_bytes(df.V4_TINY)
    alphabet = list("[]=,-#;0123456789 \nabcdefghijklmnopqrstuvwxyz") + ["\x00", "é"]
    cfg, weights = tmp_path / "m.cfg", tmp_path / "m.weights"
    outcomes = {"ok": 0, "refused": 0}
    for trial in range(300):
        chars = list(text)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(chars)))
            op = int(rng.integers(0, 3))
            if op == 0:
                del chars[at]
            elif op == 1:
                chars.insert(at, str(rng.choice(alphabet)))
            else:
                chars[at] = str(rng.choice(alphabet))
        cfg.write_text("".join(chars), encoding="utf-8")
        cut = data if trial % 3 else data[: int(rng.integers(0, len(data)))]
        weights.write_bytes(cut)
        try:
            pydeconv.load(cfg, weights=weights)
            outcomes["ok"] += 1
        except PydeconvError as exc:
            assert str(exc).startswith(("m.cfg: ", "m.weights: ", str(cfg))), str(exc)
            outcomes["refused"] += 1
    assert outcomes["ok"] >= 5 and outcomes["refused"] >= 100, outcomes
