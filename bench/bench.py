#!/usr/bin/env python
"""pydeconv benchmark: forward passes, per-layer convolutions and Zeiler-Fergus projections against
PyTorch, ONNX Runtime and Captum (each only if importable), in one run.

Engines are interleaved repetition by repetition so host noise hits them alike. Every figure is a
median (with the minimum) and, where flops are defined, GFLOP/s and % of the peak fp32 FMA rate
measured in the same run by bench/peak.cpp. Benchmarks are not tests: nothing here asserts.

    python bench/bench.py            # the full run (several minutes)
    python bench/bench.py --quick    # smoke run, < 2 minutes
    python bench/bench.py --save bench/results.md
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# This checkout's pydeconv when it has a built engine (the development build copies _core into
# pydeconv/), else the installed package: after `pip install .` the checkout has no _core and
# importing it would fail ("cannot import name '_core'").
if any((ROOT / "pydeconv").glob("_core*")):
    sys.path.insert(0, str(ROOT))
import pydeconv  # noqa: E402
from pydeconv import _core  # noqa: E402

# The pydeconv memory probe runs in its own process and must not carry the frameworks' imports.
_PYDECONV_ONLY = (
    len(sys.argv) > 2 and sys.argv[1] == "--rss-child" and sys.argv[2].startswith("pydeconv")
)
torch = ort = NeuronDeconvolution = F = None
if not _PYDECONV_ONLY:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    try:
        from captum.attr import NeuronDeconvolution
    except ImportError:
        NeuronDeconvolution = None

# -- model specs: one list of ops, turned into a pydeconv graph, a torch model and an ONNX file --
VGG16_CONVS = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
]


def vgg16_trunk():
    ops, block, idx = [], 1, 1
    for v in VGG16_CONVS:
        if v == "M":
            ops.append(("pool", f"pool{block}", 2, 2, 0, False))
            block, idx = block + 1, 1
        else:
            ops += [("conv", f"conv{block}_{idx}", v, 3, 1, 1), ("relu", f"relu{block}_{idx}")]
            idx += 1
    return ops


def zfnet():
    """ZFNet (Zeiler & Fergus 2014, Fig. 3): 7x7/2 conv, overlapping 3x3/2 pools, LRN, 3 FC."""
    return [
        ("conv", "conv1", 96, 7, 2, 1),
        ("relu", "relu1"),
        ("pool", "pool1", 3, 2, 0, True),
        ("lrn", "norm1"),
        ("conv", "conv2", 256, 5, 2, 0),
        ("relu", "relu2"),
        ("pool", "pool2", 3, 2, 0, True),
        ("lrn", "norm2"),
        ("conv", "conv3", 384, 3, 1, 1),
        ("relu", "relu3"),
        ("conv", "conv4", 384, 3, 1, 1),
        ("relu", "relu4"),
        ("conv", "conv5", 256, 3, 1, 1),
        ("relu", "relu5"),
        ("pool", "pool5", 3, 2, 0, True),
        ("flatten", "flat"),
        ("linear", "fc6", 4096),
        ("relu", "relu6"),
        ("linear", "fc7", 4096),
        ("relu", "relu7"),
        ("linear", "fc8", 1000),
    ]


def out_size(size, k, s, p, ceil):
    span = size + 2 * p - k
    o = (-(-span // s) if ceil else span // s) + 1
    return o - 1 if ceil and (o - 1) * s >= size + p else o  # a window may not start in the padding


def realise(name, ops, in_shape, seed=0):
    """Seeded He-normal weights; returns (graph dict, params, per-op shapes, flops per op)."""
    rng = np.random.default_rng(seed)
    graph = {
        "format": "pydeconv",
        "version": 1,
        "name": name,
        "input": {"name": "input", "shape": list(in_shape)},
        "layers": [],
    }
    params, shapes, flops, src, shape = {}, {"input": in_shape}, {}, "input", in_shape
    for op in ops:
        kind, lname = op[0], op[1]
        layer = {"name": lname, "inputs": [src]}
        if kind == "conv":
            oc, k, s, p = op[2:]
            c, h, w = shape
            wt = rng.standard_normal((oc, c, k, k), dtype=np.float32) * np.float32(
                np.sqrt(2.0 / (c * k * k))
            )
            params[f"{lname}/weight"] = wt
            params[f"{lname}/bias"] = rng.standard_normal(oc, dtype=np.float32) * np.float32(0.01)
            shape = (oc, out_size(h, k, s, p, False), out_size(w, k, s, p, False))
            flops[lname] = 2 * oc * c * k * k * shape[1] * shape[2]
            layer.update(
                kind="conv2d",
                attrs={"kernel_size": [k, k], "stride": [s, s], "padding": [p] * 4},
                params={"weight": list(wt.shape), "bias": [oc]},
            )
        elif kind == "pool":
            k, s, p, ceil = op[2:]
            c, h, w = shape
            shape = (c, out_size(h, k, s, p, ceil), out_size(w, k, s, p, ceil))
            layer.update(
                kind="max_pool2d",
                attrs={
                    "kernel_size": [k, k],
                    "stride": [s, s],
                    "padding": [p] * 4,
                    "ceil_mode": ceil,
                },
            )
        elif kind == "linear":
            fan_in = int(np.prod(shape))
            wt = rng.standard_normal((op[2], fan_in), dtype=np.float32) * np.float32(
                np.sqrt(2.0 / fan_in)
            )
            params[f"{lname}/weight"] = wt
            params[f"{lname}/bias"] = np.zeros(op[2], np.float32)
            shape = (op[2],)
            flops[lname] = 2 * fan_in * op[2]
            layer.update(kind="linear", params={"weight": list(wt.shape), "bias": [op[2]]})
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
            layer.update(kind="flatten")
        elif kind == "lrn":
            layer.update(kind="lrn", attrs={"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0})
        else:
            layer.update(kind=kind)
        graph["layers"].append(layer)
        shapes[lname] = shape
        src = lname
    return graph, params, shapes, flops


def model_net(name):
    """bench.py's "zfnet" or "vgg16" (the trunk) for a 1x3x224x224 input, with realise()'s seeded
    weights, built by pydeconv: what the helper scripts in bench/ time and compare."""
    ops = zfnet() if name == "zfnet" else vgg16_trunk()
    graph, params, _, _ = realise(name, ops, (3, 224, 224))
    return pydeconv.build(graph, params)


def torch_model(ops, params, shapes):
    """nn.Sequential with the same weights (module ReLUs so Captum can hook them)."""
    mods, prev = [], "input"
    for op in ops:
        kind, lname = op[0], op[1]
        if kind == "conv":
            oc, k, s, p = op[2:]
            m = torch.nn.Conv2d(shapes[prev][0], oc, k, s, p)
        elif kind == "linear":
            m = torch.nn.Linear(shapes[prev][0], op[2])
        elif kind == "pool":
            m = torch.nn.MaxPool2d(op[2], op[3], op[4], ceil_mode=op[5])
        elif kind == "lrn":
            m = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)
        elif kind == "flatten":
            m = torch.nn.Flatten()
        else:
            m = torch.nn.ReLU()
        if kind in ("conv", "linear"):
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(params[f"{lname}/weight"]))
                m.bias.copy_(torch.from_numpy(params[f"{lname}/bias"]))
        mods.append(m)
        prev = lname
    return torch.nn.Sequential(*mods).eval()


def onnx_bytes(graph, params):
    """The same graph as ONNX, written with tests/onnx_writer.py (no `onnx` package needed)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from onnx_writer import OnnxBuilder

    b = OnnxBuilder(opset=13, name=graph["name"])
    src = b.input("input", [1] + graph["input"]["shape"])
    for layer in graph["layers"]:
        kind, name, a = layer["kind"], layer["name"], layer.get("attrs", {})
        ins = [src]
        if kind in ("conv2d", "linear"):
            ins += [
                b.init(f"{name}/weight", params[f"{name}/weight"]),
                b.init(f"{name}/bias", params[f"{name}/bias"]),
            ]
        if kind == "conv2d":
            src = b.node(
                "Conv", ins, kernel_shape=a["kernel_size"], strides=a["stride"], pads=a["padding"]
            )
        elif kind == "max_pool2d":
            src = b.node(
                "MaxPool",
                ins,
                kernel_shape=a["kernel_size"],
                strides=a["stride"],
                pads=a["padding"],
                ceil_mode=int(a["ceil_mode"]),
            )
        elif kind == "lrn":
            src = b.node("LRN", ins, size=5, alpha=1e-4, beta=0.75, bias=1.0)
        elif kind == "linear":
            src = b.node("Gemm", ins, transB=1)
        else:
            src = b.node({"relu": "Relu", "flatten": "Flatten"}[kind], ins)
    b.output(src)
    return b.to_bytes()


# -- timing -------------------------------------------------------------------------------------
# Pause before each timed call. The engines' worker threads keep spinning for a while after a
# call returns (ONNX Runtime's intra-op pool, OpenMP runtimes); without a pause, whichever engine
# runs next shares the cores with them. ONNX Runtime's spin outlasts 50 ms: `bench/settle.py`
# (2-thread ZFNet forwards, medians of 25) timed pydeconv right after ONNX Runtime at 36.0 ms
# against 31.4 ms right after itself with a 50 ms pause, and 33.0 against 34.0 ms with 200 ms.
SETTLE_S = 0.2


def interleaved(fns: dict, reps: int) -> dict:
    """Runs each callable once to warm up, then `reps` rounds of all of them; seconds per call.
    Every call starts after the same SETTLE_S pause. Each round runs the engines in a fresh
    (seeded) random order: a pause may not outlast the previous engine's spinning workers
    (see SETTLE_S), and a fixed order would charge whatever is left of that to one engine."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    order, rng = list(fns), random.Random(0)
    for _ in range(reps):
        rng.shuffle(order)
        for name in order:
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def peak_gflops(threads: list[int]) -> dict:
    """Compiles and runs bench/peak.cpp (g++ -mavx2 -mfma); {} when that is impossible."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "peak")
        cmd = [
            cxx,
            "-O2",
            "-mavx2",
            "-mfma",
            "-fopenmp",
            str(ROOT / "bench" / "peak.cpp"),
            "-o",
            exe,
        ]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            return {}
        out = subprocess.run(
            [exe] + [str(t) for t in threads], capture_output=True, text=True
        ).stdout
    peaks = {}
    for line in out.splitlines():
        fields = dict(f.split("=") for f in line.split())
        peaks[int(fields["threads"])] = float(fields["gflops"])
    return peaks


class Report:
    def __init__(self, peaks):
        self.peaks, self.lines = peaks, []

    def say(self, text=""):
        print(text, flush=True)
        self.lines.append(text)

    def table(self, title, header, rows):
        self.say(f"\n### {title}\n")
        self.say("| " + " | ".join(header) + " |")
        self.say("|" + "---|" * len(header))
        for r in rows:
            self.say("| " + " | ".join(str(c) for c in r) + " |")

    def timing_rows(self, times, flops, threads, base):
        """One row per engine: median, min, GFLOP/s, % of peak, ratio to `base`'s median."""
        rows, ref = [], statistics.median(times[base]) if base in times else None
        for name, ts in times.items():
            med = statistics.median(ts)
            gf = flops / med * 1e-9 if flops else None
            peak = self.peaks.get(threads)
            rows.append(
                [
                    name,
                    threads,
                    f"{med * 1e3:.1f}",
                    f"{min(ts) * 1e3:.1f}",
                    f"{gf:.1f}" if gf else "-",
                    f"{100 * gf / peak:.0f}%" if gf and peak else "-",
                    f"{med / ref:.2f}x" if ref else "-",
                ]
            )
        return rows


HEAD = ["engine", "threads", "median ms", "min ms", "GFLOP/s", "% peak", "time / pydeconv"]


# -- the parts of the benchmark -----------------------------------------------------------------
def forward_part(rep, title, net, model, sess_for, x, flops, threads, reps):
    rows = []
    for t in threads:
        # keep='all' (the default: every activation returned) and keep='minimal' (only what a
        # projection needs: switches and ReLU masks; ReLUs then run in place).
        fns = {
            "pydeconv": lambda: net.forward(x, threads=t),
            "pydeconv keep=minimal": lambda: net.forward(x, threads=t, keep="minimal"),
        }
        if model is not None:
            torch.set_num_threads(t)
            xt = torch.from_numpy(x)
            fns["torch"] = lambda: _torch_run(model, xt)
            xcl = xt.contiguous(memory_format=torch.channels_last)
            mcl = _channels_last_copy(model)
            fns["torch channels-last"] = lambda: _torch_run(mcl, xcl)
        if sess_for is not None:
            sess = sess_for(t)
            fns["onnxruntime"] = lambda: sess.run(None, {"input": x})
        rows += rep.timing_rows(interleaved(fns, reps), flops, t, "pydeconv")
    rep.table(title, HEAD, rows)


def _torch_run(model, xt):
    with torch.inference_mode():
        return model(xt)


def _channels_last_copy(model):
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def per_layer_part(rep, ops, params, shapes, flops, threads, reps):
    """Each of VGG16's 13 conv layers alone (conv + bias), pydeconv vs torch."""
    rows, prev = [], "input"
    for op in ops:
        if op[0] == "conv":
            name, (c, h, w) = op[1], shapes[prev]
            graph, lp, _, _ = realise(name, [op], (c, h, w))
            lp = {
                f"{name}/weight": params[f"{name}/weight"],
                f"{name}/bias": params[f"{name}/bias"],
            }
            net = pydeconv.build(graph, lp)
            x = np.random.default_rng(1).standard_normal((1, c, h, w), dtype=np.float32)
            for t in threads:
                fns = {"pydeconv": lambda: net.forward(x, keep="minimal", threads=t)}
                if torch is not None:
                    torch.set_num_threads(t)
                    wt, bt, xt = (
                        torch.from_numpy(a) for a in (lp[f"{name}/weight"], lp[f"{name}/bias"], x)
                    )
                    fns["torch"] = lambda: _torch_conv(xt, wt, bt, op[4], op[5])
                for r in rep.timing_rows(interleaved(fns, reps), flops[name], t, "pydeconv"):
                    rows.append([name, f"{c}x{h}x{w}"] + r)
        prev = op[1]
    rep.table(
        "VGG16 conv layers one by one (1x3x224x224 activations)", ["layer", "input"] + HEAD, rows
    )


def _torch_conv(xt, wt, bt, stride, pad):
    with torch.inference_mode():
        return F.conv2d(xt, wt, bt, stride, pad)


class TorchDeconvNet:
    """The explicit PyTorch DeconvNet: a recording forward (pre-ReLU activations, pool indices),
    then MaxUnpool2d + conv_transpose2d + ReLU back to the pixels (VGG: non-overlapping pools)."""

    def __init__(self, model, ops):
        self.model, self.ops = model, ops

    def forward(self, xt, upto):
        acts, rec = {}, []
        with torch.inference_mode():
            h = xt
            for op, m in zip(self.ops, self.model):
                if op[0] == "pool":
                    out, idx = F.max_pool2d(
                        h,
                        m.kernel_size,
                        m.stride,
                        m.padding,
                        ceil_mode=m.ceil_mode,
                        return_indices=True,
                    )
                    rec.append((op, m, h.shape, idx))
                    h = out
                else:
                    rec.append((op, m, h.shape, None))
                    h = m(h)
                acts[op[1]] = h
                if op[1] == upto:
                    break
        return acts, rec

    def project(self, acts, rec, layer, channel):
        with torch.inference_mode():
            a = acts[layer][:, channel]
            flat = a.reshape(a.shape[0], -1)
            pos = flat.argmax(dim=1)  # first maximum, as pydeconv's at="max"
            g = torch.zeros_like(acts[layer])
            g[:, channel].reshape(a.shape[0], -1)[torch.arange(a.shape[0]), pos] = flat[
                torch.arange(a.shape[0]), pos
            ]
            for op, m, in_shape, idx in reversed(rec):
                if op[0] == "conv":
                    s, p, k = m.stride[0], m.padding[0], m.kernel_size[0]
                    extra = in_shape[2] - ((g.shape[2] - 1) * s - 2 * p + k)
                    g = F.conv_transpose2d(g, m.weight, None, s, p, output_padding=extra)
                elif op[0] == "relu":
                    g = F.relu(g)
                elif op[0] == "pool":
                    g = F.max_unpool2d(
                        g, idx, m.kernel_size, m.stride, m.padding, output_size=in_shape[2:]
                    )
            return g


def strongest_channel(acts):
    return int(acts[0].reshape(acts.shape[1], -1).max(axis=1).argmax())


def projection_part(rep, net, model, ops, x, threads, reps):
    rows, deconv = [], TorchDeconvNet(model, ops) if model is not None else None
    for layer in ("conv5_3", "conv3_3"):
        _, trace = net.forward(x)
        ch = strongest_channel(trace.activation(layer))
        for t in threads:
            fns = {
                "pydeconv projection": lambda: net.project(trace, layer, ch, at="max", threads=t),
                "pydeconv forward + projection": lambda: net.project(
                    net.forward(x, threads=t)[1], layer, ch, at="max", threads=t
                ),
            }
            if deconv is not None:
                torch.set_num_threads(t)
                xt = torch.from_numpy(x)
                acts, rec = deconv.forward(xt, layer)
                fns["torch projection"] = lambda: deconv.project(acts, rec, layer, ch)
                fns["torch forward + projection"] = lambda: deconv.project(
                    *deconv.forward(xt, layer), layer, ch
                )
                if NeuronDeconvolution is not None:
                    fns["captum NeuronDeconvolution"] = lambda: _captum(
                        model, ops, layer, trace, xt, ch
                    )
            times = interleaved(fns, reps)
            for r in rep.timing_rows(times, None, t, "pydeconv projection"):
                rows.append([layer, ch] + r[:4] + r[6:])
            if deconv is not None:
                ours = net.project(trace, layer, ch, at="max", threads=t)
                theirs = deconv.project(acts, rec, layer, ch).numpy()
                err = np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30)
                rep.say(
                    f"- {layer} ch {ch}, {t} thread(s): "
                    f"max |pydeconv - torch| / max |torch| = {err:.1e}"
                )
    rep.table(
        'Zeiler-Fergus projection of one unit (the channel\'s strongest activation, at="max")',
        [
            "layer",
            "channel",
            "engine",
            "threads",
            "median ms",
            "min ms",
            "time / pydeconv projection",
        ],
        rows,
    )


def _captum(model, ops, layer, trace, xt, ch):
    names = [op[1] for op in ops]
    act = trace.activation(layer)[0, ch]
    y, x = np.unravel_index(int(act.argmax()), act.shape)
    nd = NeuronDeconvolution(model, model[names.index(layer)])
    return nd.attribute(xt.clone().requires_grad_(True), neuron_selector=(ch, int(y), int(x)))


def all_channels_part(rep, net, model, ops, x, threads, quick):
    """Every conv5_3 channel projected from its strongest activation."""
    _, trace = net.forward(x)
    nch = trace.activation("conv5_3").shape[1]
    count = 16 if quick else nch
    chunk = 16  # channels per batched call: bounds the memory of the batched pass
    rows = []
    for t in threads:
        t0 = time.perf_counter()
        for c0 in range(0, count, chunk):
            net.project(
                trace, "conv5_3", list(range(c0, min(count, c0 + chunk))), at="max", threads=t
            )
        ours = (time.perf_counter() - t0) * nch / count
        note = "measured" if count == nch else f"{count} channels measured, x{nch / count:g}"
        rows.append(["pydeconv (batches of 16)", t, f"{ours:.1f}", note, "1.00x"])
        if model is not None:
            torch.set_num_threads(t)
            deconv, few = TorchDeconvNet(model, ops), 1 if quick else 4
            t0 = time.perf_counter()
            for ch in range(
                few
            ):  # one channel at a time, each with its own forward, as a user would
                deconv.project(*deconv.forward(torch.from_numpy(x), "conv5_3"), "conv5_3", ch)
            theirs = (time.perf_counter() - t0) * nch / few
            rows.append(
                [
                    "torch (one channel per pass)",
                    t,
                    f"{theirs:.1f}",
                    f"{few} channels measured, x{nch / few:g}",
                    f"{theirs / ours:.2f}x",
                ]
            )
    rep.table(
        f"All {nch} conv5_3 channels projected (strongest activation each)",
        ["engine", "threads", "seconds (total)", "how", "time / pydeconv"],
        rows,
    )


def rss_child(engine, model_path):
    """Runs in a subprocess: load VGG16, forward + one conv5_3 projection; prints peak RSS in MiB.
    pydeconv loads the model file as a user would (the parent wrote it); torch builds its model."""
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224), dtype=np.float32)
    if engine.startswith("pydeconv"):
        net = pydeconv.load(model_path)
        _, trace = net.forward(x, keep=["conv5_3"] if engine.endswith("minimal") else "all")
        net.project(trace, "conv5_3", 0, at="max")
    else:
        ops = vgg16_trunk()
        graph, params, shapes, _ = realise("vgg16-trunk", ops, (3, 224, 224))
        model = torch_model(ops, params, shapes)
        del params
        deconv = TorchDeconvNet(model, ops)
        deconv.project(*deconv.forward(torch.from_numpy(x), "conv5_3"), "conv5_3", 0)
    # Linux keeps ru_maxrss across fork + exec (the child would report the parent's peak if that
    # was higher), so report the process image's own high-water mark, VmHWM, beside it.
    hwm = next(
        (int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM")), 0
    )
    print(f"{hwm / 1024.0:.0f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0:.0f}")


def rss_part(rep):
    rows = []
    graph, params, _, _ = realise("vgg16-trunk", vgg16_trunk(), (3, 224, 224))
    model_path = Path(tempfile.mkdtemp(prefix="pydeconv-bench-")) / "vgg16.npz"
    pydeconv.build(graph, params).save(model_path)
    for engine in ["pydeconv-minimal", "pydeconv-all"] + (["torch"] if torch is not None else []):
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", engine, str(model_path)],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            rows.append([engine] + out.stdout.split()[-2:])
        else:
            rows.append([engine, f"failed: {out.stderr[-200:]}", "-"])
    shutil.rmtree(model_path.parent, ignore_errors=True)
    rep.table(
        "Peak RSS, VGG16 trunk: load + forward + one conv5_3 projection (own process, MiB; "
        "includes the interpreter and NumPy; pydeconv loads the .npz, keep=['conv5_3'] (minimal) "
        "or 'all'; torch with its own import)",
        ["engine", "VmHWM MiB", "ru_maxrss MiB"],
        rows,
    )


def machine():
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = f"numpy {np.__version__}"
    versions += f", torch {torch.__version__}" if torch is not None else ", torch absent"
    versions += f", onnxruntime {ort.__version__}" if ort is not None else ", onnxruntime absent"
    versions += ", captum present" if NeuronDeconvolution is not None else ", captum absent"
    # The checkout's build or the installed package (see the imports); the path shows which ran.
    where = Path(pydeconv.__file__).resolve().parent
    return (
        f"commit {commit}; {model}, {os.cpu_count()} logical CPUs; "
        f"Python {platform.python_version()}, "
        f"{versions}; pydeconv from {where}, sgemm micro-kernel {_core.sgemm_isa()}"
    )


PARTS = ("forward", "layers", "project", "all", "rss")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="all threads only, fewer repetitions, no ZFNet, 16 of 512 channels (smoke run)",
    )
    ap.add_argument(
        "--threads", type=int, nargs="+", default=None, help="thread counts (default: 1 and all)"
    )
    ap.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run"
    )
    ap.add_argument("--save", help="also write the Markdown report to this file")
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_child(*args.rss_child)
    ncpu = os.cpu_count() or 1
    threads = args.threads or ([ncpu] if args.quick else sorted({1, ncpu}))
    reps = 2 if args.quick else 7
    rep = Report(peak_gflops(threads))
    rep.say(f"# pydeconv benchmark{' (--quick)' if args.quick else ''}\n")
    rep.say(f"{machine()}\n")
    rep.say(
        "Peak fp32 FMA (bench/peak.cpp): "
        + (
            ", ".join(f"{v:.1f} GFLOP/s on {t} thread(s)" for t, v in rep.peaks.items())
            or "not measured"
        )
    )
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224), dtype=np.float32)
    if "rss" in args.parts:
        rss_part(rep)

    models = [("VGG16 conv trunk forward, 1x3x224x224", "vgg16", vgg16_trunk())]
    if "forward" in args.parts and not args.quick:
        models.append(("ZFNet forward, 1x3x224x224", "zfnet", zfnet()))
    for title, name, ops in models:
        graph, params, shapes, flops = realise(name, ops, (3, 224, 224))
        net = pydeconv.build(graph, params)
        model = torch_model(ops, params, shapes) if torch is not None else None
        if name == "vgg16":
            vgg = (net, model, ops, params, shapes, flops)
        if "forward" not in args.parts:
            continue
        sess_for = None
        if ort is not None:
            blob = onnx_bytes(graph, params)

            def sess_for(t, blob=blob):
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads = t, 1
                so.log_severity_level = 3  # no shape-merge warnings in the report
                return ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])

        total = sum(flops.values())
        # Whole-network forwards are short and the host noisy: more rounds for their medians.
        forward_part(
            rep,
            f"{title} ({total / 1e9:.1f} GFLOP)",
            net,
            model,
            sess_for,
            x,
            total,
            threads,
            reps if args.quick else 15,
        )

    net, model, ops, params, shapes, flops = vgg
    if "layers" in args.parts:
        per_layer_part(rep, ops, params, shapes, flops, threads, 1 if args.quick else 5)
    if "project" in args.parts:
        projection_part(rep, net, model, ops, x, threads, reps)
    if "all" in args.parts:
        all_channels_part(
            rep, net, model, ops, x, threads[-1:] if args.quick else threads, args.quick
        )
    if args.save:
        Path(args.save).write_text("\n".join(rep.lines) + "\n")


if __name__ == "__main__":
    main()
