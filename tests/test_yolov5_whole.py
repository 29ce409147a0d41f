"""YOLOv5 graphs imported whole, post-processing included (issue 14): the Detect head's rank-5
view (1, 3, 5 + nc, H, W) and permute (0, 1, 3, 4, 2) are held as rank 4 with H, W merged
(docs/FORMAT.md), so the sigmoid, the split of the last axis, the box arithmetic with the constant
``grid`` / ``anchor_grid`` tensors, ``** 2`` and the concat become layers, and a detection's class
score in the final (1, boxes, 1, 5 + nc) output is a unit that projects to the pixels by its exact
gradient.

A small torch twin with Ultralytics' v6/v7 export-mode Detect code (``_make_grid``, the split
form; no ultralytics): both exporters, forward against torch and ONNX Runtime, detections against
a NumPy decode of torch's output, projections of score units against torch autograd (deconvnet and
guided: torch's SiLU with the rule's backward, as tests/test_rules_torch.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_check import RULES, ort_run
from torch_twins import cbs, export, seeded, set_rule, unit_gradient_error

import pydeconv
from pydeconv import detect
from pydeconv.onnx import import_onnx

torch = pytest.importorskip("torch")
nn = torch.nn

NC = 3
SIZE = 64
STRIDES = (8, 16, 32)
ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))


class Detect(nn.Module):
    """Ultralytics YOLOv5's Detect (models/yolo.py, v6/v7) in export mode."""

    def __init__(self, nc, anchors, ch, stride):
        super().__init__()
        self.nc, self.no = nc, nc + 5
        self.nl, self.na = len(anchors), len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.anchors /= torch.tensor(stride).float().view(-1, 1, 1)  # in grid cells, as trained
        self.stride = torch.tensor(stride).float()
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.grid = [torch.empty(0) for _ in range(self.nl)]
        self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]

    def forward(self, x):
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if self.grid[i].shape[2:4] != x[i].shape[2:4]:
                self.grid[i], self.anchor_grid[i] = self._make_grid(nx, ny, i)
            z.append(self._decode(x[i].sigmoid(), i, bs, ny, nx))
        return torch.cat(z, 1)

    def _decode(self, y, i, bs, ny, nx):
        """Scale i's sigmoid-ed (bs, na, ny, nx, no) head as boxes in pixels, (bs, boxes, no)."""
        xy, wh, conf = y.split((2, 2, self.nc + 1), 4)
        xy = (xy * 2 + self.grid[i]) * self.stride[i]
        wh = (wh * 2) ** 2 * self.anchor_grid[i]
        y = torch.cat((xy, wh, conf), 4)
        return y.view(bs, self.na * nx * ny, self.no)

    def _make_grid(self, nx=20, ny=20, i=0):
        d, t = self.anchors[i].device, self.anchors[i].dtype
        shape = 1, self.na, ny, nx, 2
        y, x = torch.arange(ny, device=d, dtype=t), torch.arange(nx, device=d, dtype=t)
        yv, xv = torch.meshgrid(y, x, indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).view((1, self.na, 1, 1, 2)).expand(shape)
        return grid, anchor_grid


class DetectSliceAssign(Detect):
    """The older Detect (YOLOv5 up to v5.0): the decode written as slice assignments, which the
    TorchScript exporter writes as ScatterND (the dynamo exporter: ScatterND between Transposes
    that swap the last axis with the batch). The same function as Detect."""

    def _decode(self, y, i, bs, ny, nx):
        y[..., 0:2] = (y[..., 0:2] * 2 + self.grid[i]) * self.stride[i]
        y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
        return y.view(bs, -1, self.no)


class YoloV5Whole(nn.Module):
    def __init__(self, detect=Detect):
        super().__init__()
        self.b0 = nn.Sequential(cbs(3, 8, 3, 2), cbs(8, 8, 3, 2), cbs(8, 16, 3, 2))
        self.b1, self.b2 = cbs(16, 16, 3, 2), cbs(16, 16, 3, 2)
        self.detect = detect(NC, ANCHORS, (16, 16, 16), STRIDES)

    def forward(self, x):
        p3 = self.b0(x)
        p4 = self.b1(p3)
        return self.detect([p3, p4, self.b2(p4)])


def _twin(detect=Detect):
    model = seeded(lambda: YoloV5Whole(detect))
    with torch.no_grad():
        model(torch.zeros(1, 3, SIZE, SIZE))  # Ultralytics' dry run: the grids become constants
    return model


BOXES = 3 * sum((SIZE // s) ** 2 for s in STRIDES)


@pytest.fixture(
    scope="module",
    params=["torchscript", "dynamo", "torchscript-slice-assign", "dynamo-slice-assign"],
)
def twin(request, tmp_path_factory):
    """(exporter, the model autograd runs on, input, file, graph, net, output, trace). The
    slice-assignment form is exported from DetectSliceAssign; torch cannot differentiate its
    in-place decode, so the reference model is the split form with the same weights."""
    exporter = request.param
    if exporter.startswith("dynamo"):
        pytest.importorskip("onnxscript")
    model = _twin()
    exported = _twin(DetectSliceAssign) if exporter.endswith("slice-assign") else model
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype("f4"))
    path = str(tmp_path_factory.mktemp("twin") / f"yolov5_{exporter}.onnx")
    export(exported, x, path, exporter.startswith("dynamo"))
    graph, params = import_onnx(path)
    net = pydeconv.build(graph, params)
    out, trace = net.forward(x.numpy())
    with torch.no_grad():
        np.testing.assert_array_equal(exported(x).numpy(), model(x).numpy())
    return exporter, model, x, path, graph, net, out, trace


def test_twin_imports_whole(twin):
    exporter, model, x, path, graph, net, out, _ = twin
    kinds = [layer["kind"] for layer in graph["layers"]]
    for kind in ("reshape", "transpose", "slice", "mul", "affine", "sigmoid", "concat"):
        assert kind in kinds, (kind, kinds)
    attrs = [layer.get("attrs", {}) for layer in graph["layers"]]
    assert {"axis": 3} in attrs  # the concat of xy, wh, conf along the last ONNX axis
    assert any(a.get("axis") == 3 and "start" in a for a in attrs)  # its split
    assert len(graph["outputs"]) == 1 and out.shape == (1, BOXES, 1, 5 + NC)
    with torch.no_grad():
        want = model(x).numpy()
    (ort,) = ort_run(path, x.numpy()).values()
    got = out.reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got, ort, rtol=1e-5, atol=1e-4)
    worst = float(np.abs(got - want).max())
    rel = float((np.abs(got - want) / np.maximum(np.abs(want), 1e-3)).max())
    print(
        f"\nyolov5 whole twin/{exporter}: max abs difference vs torch {worst:.2g} "
        f"(relative {rel:.2g}), vs ONNX Runtime {float(np.abs(got - ort).max()):.2g}"
    )


def _numpy_decode(y, conf, iou):
    """Ultralytics' non_max_suppression's scores on torch's (boxes, 5 + nc) output: score =
    obj * cls of the best class, xywh -> xyxy, then class-wise NMS."""
    obj, cls = y[:, 4], y[:, 5:]
    best = cls.argmax(1)
    score = obj * cls[np.arange(len(y)), best]
    keep = np.nonzero(score >= conf)[0]
    cx, cy, w, h = y[keep, :4].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    kept = detect.nms(boxes, score[keep], best[keep], iou)
    return [(int(keep[i]), int(best[keep[i]]), float(score[keep[i]]), boxes[i]) for i in kept]


def test_twin_detections_equal_a_numpy_decode_of_torch(twin):
    _, model, x, _, graph, net, out, _ = twin
    (head,) = detect.heads(net)
    assert (head.layer, head.layout, head.classes) == (graph["outputs"][0], "v5_decoded", NC)
    dets, trace = detect.detect(net, x.numpy(), conf=0.05, iou=0.5, max_det=1000)
    with torch.no_grad():
        want = _numpy_decode(model(x)[0].numpy().astype(np.float64), 0.05, 0.5)
    assert dets and len(dets) == len(want)
    for d, (row, cls, score, box) in zip(dets, want):
        assert (d.channel, d.class_id) == (row, cls)
        assert d.unit == {"layer": graph["outputs"][0], "channel": row, "at": (0, 5 + cls)}
        assert d.score == pytest.approx(score, rel=1e-5)
        assert d.logit == pytest.approx(float(out[0, row, 0, 5 + cls]))
        np.testing.assert_allclose(d.box, box, rtol=1e-5, atol=1e-3)


def test_twin_projection_is_the_exact_gradient(twin):
    """backprop from detections' class-score units equals torch autograd of that output element;
    deconvnet and guided against torch's SiLU with the rule's backward."""
    _, model, x, _, graph, net, out, trace = twin
    layer = graph["outputs"][0]
    dets, _ = detect.detect(net, x.numpy(), conf=0.0, iou=0.5, max_det=4)
    units = [(d.channel, d.x) for d in dets] + [(5, 0), (BOXES - 1, 3), (200, 4)]
    worst = 0.0
    for rule in RULES:
        set_rule(model, rule)
        try:
            for row, col in units:
                err = unit_gradient_error(
                    model, x, net, trace, layer, out.shape, row, col, rule, rtol=1e-4
                )
                worst = max(worst, err)
        finally:
            set_rule(model, "backprop")
    print(
        f"\nyolov5 whole twin: projections vs torch autograd, max |diff| / max |grad| {worst:.2g}"
    )
    d = dets[0]
    start = np.zeros(out.shape, np.float32)
    start[0, d.channel, 0, d.x] = out[0, d.channel, 0, d.x]
    got = net.project(trace, **d.unit, rule="backprop")
    np.testing.assert_array_equal(got, net.project(trace, layer, at=start, rule="backprop"))


def test_twin_keep_minimal_projects_the_same(twin):
    """keep="minimal" keeps what the decode's backward needs (the sigmoid's output, both inputs
    of the squaring mul): the same projection bits as keep="all"."""
    _, _, x, _, graph, net, out, trace = twin
    layer = graph["outputs"][0]
    small, lean = net.forward(x.numpy(), keep="minimal")
    np.testing.assert_array_equal(small, out)
    for row, col in ((5, 0), (100, 2), (BOXES - 1, 7)):
        for rule in RULES:
            want = net.project(trace, layer, channel=row, at=(0, col), rule=rule)
            got = net.project(lean, layer, channel=row, at=(0, col), rule=rule)
            np.testing.assert_array_equal(got, want)


def test_twin_auto_import_is_the_whole_graph(twin):
    """Nothing is cut: outputs="auto" imports the same graph."""
    _, _, _, path, graph, _, _, _ = twin
    auto, _ = import_onnx(path, outputs="auto")
    assert auto["outputs"] == graph["outputs"] and len(auto["layers"]) == len(graph["layers"])


def test_cli_detection_needs_no_options(twin, tmp_path, capsys):
    """`pydeconv project model.onnx photo --detection 1`: the whole graph's heads are found
    (v5_decoded) and the strongest detection's class score is projected."""
    from PIL import Image

    from pydeconv import demo
    from pydeconv.cli import main

    _, _, _, path, graph, _, _, _ = twin
    out = tmp_path / "v5.png"
    argv = ["project", path, demo.demo_images()[2], "--detection", "1", "--conf", "0"]
    rc = main([str(a) for a in argv + ["-o", str(out)]])
    text, err = capsys.readouterr()
    assert rc == 0, err
    first = text.splitlines()[0]
    assert first.startswith("*1. ") and f"{graph['outputs'][0]} channel " in first, first
    assert Image.open(out).size[0] > 0


def test_labels_name_the_classes(twin):
    """labels= at import: one per class (not per output channel, which are the boxes); detect
    names each detection by it."""
    _, _, x, path, _, _, _, _ = twin
    names = ["cat", "dog", "cup"]
    graph, params = import_onnx(path, labels=names)
    net = pydeconv.build(graph, params)
    assert detect.heads(net)[0].classes == NC
    dets, _ = detect.detect(net, x.numpy(), conf=0.0, max_det=3)
    assert dets and all(d.label == names[d.class_id] for d in dets)
    with pytest.raises(pydeconv.errors.GraphError, match="2 labels given"):
        import_onnx(path, labels=names[:2])
