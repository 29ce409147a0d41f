"""Darknet cfg + weights files written by the tests: small nets shaped like yolov3-tiny and
yolov4-tiny, one that mixes the other sections and activations, and classifiers.

Each cfg is a list of sections; a ``[convolutional]`` or ``[connected]`` carries the test's own
note of its inputs (``_cin``, not written to the file) so the weights are laid out here
independently of pydeconv's reader: for a convolution biases, then (batch_normalize) scales,
rolling_mean, rolling_variance, then the OIHW weights; for a connected layer biases, weights,
then the batch norm blobs; in cfg order, after a header of version 0.1 (4-byte ``seen``) or 0.2
(8-byte).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

ANCHORS = "10,14,  23,27,  37,58,  81,82,  135,169,  344,319"


def conv(filters, cin, size=3, stride=1, bn=1, act="leaky", groups=1, **extra):
    sec = {"_kind": "convolutional", "_cin": cin, "filters": filters, "size": size}
    sec.update({"stride": stride, "pad": 1, "activation": act})
    if bn:
        sec["batch_normalize"] = 1
    if groups != 1:
        sec["groups"] = groups
    sec.update(extra)
    return sec


def section(kind, **keys):
    return {"_kind": kind, **keys}


def yolo(mask, classes=2, **extra):
    keys = {"mask": mask, "anchors": ANCHORS, "classes": classes, "num": 6, "jitter": ".3"}
    keys.update({"ignore_thresh": ".7", "truth_thresh": 1, "random": 1}, **extra)
    return section("yolo", **keys)


HEAD = 3 * (2 + 5)  # 3 anchors x (2 classes + 5)

# yolov3-tiny's structure at a small size: size-2 stride-1 pool, two heads, upsample + route.
V3_TINY = [
    conv(8, 3),
    section("maxpool", size=2, stride=2),
    conv(16, 8),
    section("maxpool", size=2, stride=2),
    conv(32, 16),
    section("maxpool", size=2, stride=2),
    conv(32, 32),
    section("maxpool", size=2, stride=1),
    conv(64, 32),
    conv(16, 64, size=1),
    conv(32, 16),
    conv(HEAD, 32, size=1, bn=0, act="linear"),
    yolo("3,4,5"),
    section("route", layers=-4),
    conv(16, 16, size=1),
    section("upsample", stride=2),
    section("route", layers="-1, 4"),
    conv(32, 48),
    conv(HEAD, 32, size=1, bn=0, act="linear"),
    yolo("0,1,2"),
]

# yolov4-tiny's structure: stride-2 convs, CSP route groups/group_id, concat routes, two heads.
V4_TINY = [
    conv(8, 3, stride=2),
    conv(16, 8, stride=2),
    conv(16, 16),
    section("route", layers=-1, groups=2, group_id=1),
    conv(8, 8),
    conv(8, 8),
    section("route", layers="-1,-2"),
    conv(16, 16, size=1),
    section("route", layers="-6,-1"),
    section("maxpool", size=2, stride=2),
    conv(32, 32),
    conv(16, 32, size=1),
    conv(32, 16),
    conv(HEAD, 32, size=1, bn=0, act="linear"),
    yolo("3,4,5", scale_x_y=1.05),
    section("route", layers=-4),
    conv(8, 16, size=1),
    section("upsample", stride=2),
    section("route", layers="-1, -11"),
    conv(16, 24),
    conv(HEAD, 16, size=1, bn=0, act="linear"),
    yolo("1,2,3", scale_x_y=1.05),
]

# The other sections and activations: mish, swish, logistic, grouped conv, shortcut with an
# activation, a 3x3 stride-2 pool (padding 1 on each side), an explicit padding=0 pool.
MIXED = [
    conv(8, 3, act="mish"),
    conv(8, 8, act="swish", groups=2),
    section("shortcut", **{"from": -2}, activation="linear"),
    conv(8, 8, size=1, bn=0, act="logistic"),
    section("maxpool", size=3, stride=2),
    conv(8, 8, act="leaky"),
    section("shortcut", **{"from": -2}, activation="leaky"),
    section("maxpool", size=2, stride=2, padding=0),
    conv(6, 8, size=1, bn=0, act="linear"),
]

# A Darknet classifier: global average pool, [connected] layers (the first on a flattened 4x4
# map), dropout, softmax and cost. OpenCV reads a [connected] layer's batch norm blobs before its
# weights, Darknet after them: the batch-normalized one is not compared with OpenCV.
CLASSIFIER = [
    conv(8, 3),
    section("maxpool", size=2, stride=2),
    conv(16, 8, act="relu"),
    section("dropout", probability=".5"),
    section("maxpool", size=4, stride=4),
    section("connected", _cin=16 * 4 * 4, output=12, activation="leaky"),
    section("dropout", probability=".5"),
    section("connected", _cin=12, output=5, activation="linear"),
    section("softmax", groups=1),
    section("cost", type="sse"),
]
CLASSIFIER_GAP = [
    conv(8, 3, act="mish"),
    conv(6, 8, size=1, bn=0, act="linear"),
    section("avgpool"),
    section("softmax", groups=1),
]
CONNECTED_BN = [
    conv(4, 3, stride=2),
    section("connected", _cin=4 * 16 * 16, output=7, activation="linear", batch_normalize=1),
]

NETS = {"v3tiny": V3_TINY, "v4tiny": V4_TINY, "mixed": MIXED}
CLASSIFIERS = {"classifier": CLASSIFIER, "gap": CLASSIFIER_GAP}


def cfg_text(sections, width=64, height=64, channels=3, net_extra=""):
    lines = [
        "[net]",
        "# Testing",
        "batch=1",
        "subdivisions=1",
        f"width={width}",
        f"height={height}",
        f"channels={channels}",
        "momentum=0.9",
        "saturation = 1.5",
        "learning_rate=0.001",
        "steps=400000,450000",
    ]
    if net_extra:
        lines.append(net_extra)
    for sec in sections:
        lines += ["", f"[{sec['_kind']}]"]
        lines += [f"{k}={v}" for k, v in sec.items() if not k.startswith("_")]
    return "\n".join(lines) + "\n"


def blobs(sections, seed=0):
    """The float32 arrays of the weights file, in order, with their (section index, field)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, sec in enumerate(sections):
        if sec["_kind"] == "connected":  # biases, weights (out, in), then batch norm
            n = sec["output"]
            out.append((i, "biases", rng.normal(0, 0.1, n)))
            out.append((i, "weights", rng.normal(0, np.sqrt(2.0 / sec["_cin"]), (n, sec["_cin"]))))
            if sec.get("batch_normalize"):
                out.append((i, "scales", rng.uniform(0.5, 1.5, n)))
                out.append((i, "rolling_mean", rng.normal(0, 0.1, n)))
                out.append((i, "rolling_variance", rng.uniform(0.5, 1.5, n)))
            continue
        if sec["_kind"] != "convolutional":
            continue
        n, size, groups = sec["filters"], sec["size"], sec.get("groups", 1)
        fan_in = sec["_cin"] // groups * size * size
        out.append((i, "biases", rng.normal(0, 0.1, n)))
        if sec.get("batch_normalize"):
            out.append((i, "scales", rng.uniform(0.5, 1.5, n)))
            out.append((i, "rolling_mean", rng.normal(0, 0.1, n)))
            out.append((i, "rolling_variance", rng.uniform(0.5, 1.5, n)))
        w = rng.normal(0, np.sqrt(2.0 / fan_in), (n, sec["_cin"] // groups, size, size))
        out.append((i, "weights", w))
    return [(i, f, np.asarray(a, np.float32)) for i, f, a in out]


def header(version=(0, 2, 0), seen=123456):
    major, minor, rev = version
    wide = major * 10 + minor >= 2
    return struct.pack("<iii", major, minor, rev) + struct.pack("<Q" if wide else "<I", seen)


def weights_bytes(sections, version=(0, 2, 0), seed=0):
    return header(version) + b"".join(a.tobytes() for _, _, a in blobs(sections, seed))


def write(folder: Path, name: str, sections, version=(0, 2, 0), seed=0, **cfg_kw):
    """Writes NAME.cfg and NAME.weights; returns their paths."""
    cfg = folder / f"{name}.cfg"
    weights = folder / f"{name}.weights"
    cfg.write_text(cfg_text(sections, **cfg_kw))
    weights.write_bytes(weights_bytes(sections, version, seed))
    return cfg, weights
