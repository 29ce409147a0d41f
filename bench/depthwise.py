"""The depthwise kernels (csrc/src/kernels/depthwise.cpp) against the GEMM path they replace and
ONNX Runtime, on MobileNetV2's depthwise convolutions (224x224 input) and two 5x5 ones
(MnasNet/EfficientNet).

    python bench/depthwise.py [--threads 2] [--reps 15]

Per shape, one depthwise conv2d (groups = channels, bias) on a seeded random 1-image input:
the forward with the depthwise kernel ("dw") and with PYDECONV_DEPTHWISE=0 (the GEMM path,
"gemm"), and ONNX Runtime's forward of the same Conv ("ort"), interleaved in one process
(bench.interleaved); then the projection of a random start signal over the whole output (the
backward over whole planes, backprop) and of 32 channels at their strongest unit (region-limited)
with and without the kernel. Prints medians in ms and the ratios, measured in this run.

OpenMP's workers wait passively here (OMP_WAIT_POLICY=passive, as in tests/conftest.py, unless
the environment says otherwise): on a shared machine, spinning workers of one 2-thread call took
the cores from the next (16 ms instead of 0.5 ms for a 32x112x112 depthwise forward).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before the engine loads libgomp
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import pydeconv  # noqa: E402

# (channels, H = W, kernel, stride): MobileNetV2's depthwise convs at 224x224, then two 5x5.
SHAPES = [
    (32, 112, 3, 1),
    (96, 112, 3, 2),
    (144, 56, 3, 1),
    (144, 56, 3, 2),
    (192, 28, 3, 1),
    (192, 28, 3, 2),
    (384, 14, 3, 1),
    (576, 14, 3, 1),
    (576, 14, 3, 2),
    (960, 7, 3, 1),
    (240, 28, 5, 1),
    (672, 14, 5, 2),
]


def model(c, hw, k, s):
    rng = np.random.default_rng(0)
    p = k // 2
    graph = {
        "format": "pydeconv",
        "version": 1,
        "name": f"dw{c}",
        "input": {"name": "input", "shape": [c, hw, hw]},
        "layers": [
            {
                "name": "dw",
                "kind": "conv2d",
                "inputs": ["input"],
                "attrs": {
                    "kernel_size": [k, k],
                    "stride": [s, s],
                    "padding": [p, p, p, p],
                    "groups": c,
                },
                "params": {"weight": [c, 1, k, k], "bias": [c]},
            }
        ],
    }
    params = {
        "dw/weight": (rng.standard_normal((c, 1, k, k)) / k).astype(np.float32),
        "dw/bias": (0.1 * rng.standard_normal(c)).astype(np.float32),
    }
    return graph, params


def ort_session(graph, params, threads):
    import onnxruntime as ort

    sys.path.insert(0, str(bench.ROOT / "tests"))
    from onnx_writer import OnnxBuilder

    a = graph["layers"][0]["attrs"]
    b = OnnxBuilder(opset=13, name=graph["name"])
    src = b.input("input", [1] + graph["input"]["shape"])
    w, bias = b.init("w", params["dw/weight"]), b.init("b", params["dw/bias"])
    out = b.node(
        "Conv",
        [src, w, bias],
        kernel_shape=a["kernel_size"],
        strides=a["stride"],
        pads=a["padding"],
        group=a["groups"],
    )
    b.output(out)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    return ort.InferenceSession(b.to_bytes(), so, providers=["CPUExecutionProvider"])


def with_kernel(on, fn):
    def run():
        os.environ["PYDECONV_DEPTHWISE"] = "1" if on else "0"
        try:
            fn()
        finally:
            os.environ.pop("PYDECONV_DEPTHWISE", None)

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    try:
        import onnxruntime  # noqa: F401

        have_ort = True
    except ImportError:
        have_ort = False
    t = args.threads
    print(f"threads={t} reps={args.reps}; medians in ms; gemm/dw > 1: the kernel is faster")
    head = f"{'C x HxW k/s':>18} {'fwd dw':>8} {'gemm':>8} {'gemm/dw':>8}"
    head += f" {'ort':>8} {'ort/dw':>7}" if have_ort else ""
    head += f" {'back dw':>8} {'gemm':>8} {'gemm/dw':>8} {'32u dw':>7} {'gemm':>7} {'gemm/dw':>8}"
    print(head)
    for c, hw, k, s in SHAPES:
        graph, params = model(c, hw, k, s)
        net = pydeconv.build(graph, params)
        x = np.random.default_rng(1).standard_normal((1, c, hw, hw), dtype=np.float32)
        fns = {
            "dw": with_kernel(True, lambda: net.forward(x, threads=t)),
            "gemm": with_kernel(False, lambda: net.forward(x, threads=t)),
        }
        if have_ort:
            sess = ort_session(graph, params, t)
            fns["ort"] = lambda: sess.run(None, {"input": x})
        fwd = {
            k_: statistics.median(v) * 1e3 for k_, v in bench.interleaved(fns, args.reps).items()
        }
        _, trace = net.forward(x, threads=t)
        start = np.random.default_rng(2).standard_normal(trace.activation("dw").shape)
        start = start.astype(np.float32)
        chans = list(range(min(32, c)))

        def full():
            net.project(trace, "dw", at=start, rule="backprop", threads=t)

        def units():
            net.project(trace, "dw", channel=chans, at="max", threads=t)

        back = {
            k_: statistics.median(v) * 1e3
            for k_, v in bench.interleaved(
                {
                    "dw": with_kernel(True, full),
                    "gemm": with_kernel(False, full),
                    "udw": with_kernel(True, units),
                    "ugemm": with_kernel(False, units),
                },
                args.reps,
            ).items()
        }
        row = f"{f'{c} x {hw}x{hw} {k}/{s}':>18} {fwd['dw']:8.3f} {fwd['gemm']:8.3f}"
        row += f" {fwd['gemm'] / fwd['dw']:8.2f}"
        if have_ort:
            row += f" {fwd['ort']:8.3f} {fwd['ort'] / fwd['dw']:7.2f}"
        row += f" {back['dw']:8.3f} {back['gemm']:8.3f} {back['gemm'] / back['dw']:8.2f}"
        row += f" {back['udw']:7.3f} {back['ugemm']:7.3f} {back['ugemm'] / back['udw']:8.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
