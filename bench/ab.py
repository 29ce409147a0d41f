"""A/B timing of two checkouts (two builds of pydeconv), interleaved call by call.

    python bench/ab.py --base /path/to/other/checkout [--cases zfnet,conv1] [--threads 1,2]
                       [--rounds 20] [--project conv3_3:86] [--layers]

A speed change is easiest to judge against the build before it, on the same host at the same
moment: this host's timings drift by tens of percent from minute to minute, so runs of the two
builds one after the other compare the host's moods as much as the code. Here each checkout runs
in child processes of its own (two builds cannot share one: pybind11 registers each type once per
interpreter) and the parent alternates single calls between them, rotating the order every round,
with a pause before each call (bench.SETTLE_S). Each build gets two children, started A, B, B, A:
with one child each, the same build measured against itself came out 3-6% apart depending on
which child was started first.

Cases: bench.py's "zfnet" and "vgg16" (forward, keep='minimal'), or "conv1" / "conv2" (ZFNet's
first two convs, each with its ReLU and pool, as a net of their own; "conv1c" is ZFNet's conv1
alone, "conv1r" with its ReLU). With --project LAYER:CHANNEL
the timed call is the projection of that unit (at="max") after an untimed forward. Prints, per
case and thread count, the median and minimum of each build and their ratio (B = this checkout,
A = --base); with --layers also each layer's median from PYDECONV_PROFILE. Build both checkouts
first (each needs its pydeconv/_core*.so in place).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, os, re, sys, tempfile, time
root = sys.argv[1]
sys.path[:0] = [root, os.path.join(root, "bench")]
err = tempfile.TemporaryFile(mode="w+")
os.dup2(err.fileno(), 2)  # PYDECONV_PROFILE's per-layer lines, read back after each call
import numpy as np, bench, pydeconv
SMALL = {
    "conv1": ((3, 224, 224), [("conv", "conv1", 96, 7, 2, 1), ("relu", "relu1"),
                              ("pool", "pool1", 3, 2, 0, True)]),
    "conv1c": ((3, 224, 224), [("conv", "conv1", 96, 7, 2, 1)]),
    "conv1r": ((3, 224, 224), [("conv", "conv1", 96, 7, 2, 1), ("relu", "relu1")]),
    "conv2": ((96, 55, 55), [("conv", "conv2", 256, 5, 2, 0), ("relu", "relu2"),
                             ("pool", "pool2", 3, 2, 0, True)]),
}
nets = {}
for line in sys.stdin:
    cmd = json.loads(line)
    case = cmd["case"]
    if case not in nets:
        if case in SMALL:
            shape, ops = SMALL[case]
            graph, params, _, _ = bench.realise(case, ops, shape)
            net = pydeconv.build(graph, params)
        else:
            shape, net = (3, 224, 224), bench.model_net(case)
        x = np.random.default_rng(0).standard_normal((1,) + shape, dtype=np.float32)
        nets[case] = (net, x)
    net, x = nets[case]
    if cmd["project"]:
        layer, ch = cmd["project"].split(":")
        _, trace = net.forward(x, threads=cmd["threads"], keep=[layer])
        err.seek(0), err.truncate()
        t0 = time.perf_counter()
        net.project(trace, layer, int(ch), at="max", threads=cmd["threads"])
    else:
        t0 = time.perf_counter()
        net.forward(x, threads=cmd["threads"], keep="minimal")
    dt = time.perf_counter() - t0
    sys.stderr.flush()
    err.seek(0)
    text = err.read()
    err.seek(0), err.truncate()
    layers = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"pydeconv \w+ \S+\s+(\S+)\s+([\d.]+) ms", text)
    }
    print(json.dumps([dt, layers]), flush=True)
"""


def main() -> None:
    sys.path.insert(0, str(HERE))
    import bench  # noqa: E402  (for SETTLE_S)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the other checkout (A)")
    ap.add_argument("--cases", default="zfnet")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--project", default="", help="LAYER:CHANNEL: time that unit's projection")
    ap.add_argument(
        "--layers", action="store_true", help="also per-layer medians (PYDECONV_PROFILE)"
    )
    args = ap.parse_args()
    roots = {"A": str(Path(args.base).resolve()), "B": str(HERE.parent)}
    env = {**os.environ, "PYDECONV_PROFILE": "1" if args.layers else "0"}
    order = [("A", 0), ("B", 0), ("B", 1), ("A", 1)]  # start order; see the docstring
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-c", CHILD, roots[key[0]]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for key in order
    }
    cases = args.cases.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    times: dict = {}
    layers: dict = {}
    for rnd in range(args.rounds + 2):  # the first two rounds warm up and are dropped
        for case in cases:
            for t in threads:
                for key in order[rnd % 4 :] + order[: rnd % 4]:
                    k = key[0]
                    time.sleep(bench.SETTLE_S)
                    p = procs[key]
                    p.stdin.write(
                        json.dumps({"case": case, "threads": t, "project": args.project}) + "\n"
                    )
                    p.stdin.flush()
                    line = p.stdout.readline()
                    if not line:
                        sys.exit(f"ab.py: a child for {roots[k]} died (is its pydeconv built?)")
                    dt, per_layer = json.loads(line)
                    if rnd >= 2:
                        times.setdefault((case, t, k), []).append(dt * 1e3)
                        layers.setdefault((case, t, k), []).append(per_layer)
    for p in procs.values():
        p.stdin.close()
        p.wait()
    what = f"project {args.project}" if args.project else "forward"
    print(
        f"A = {roots['A']}, B = {roots['B']}; {what}, {args.rounds} interleaved rounds of 2 calls "
        "per build, ms"
    )
    for case in cases:
        for t in threads:
            a, b = times[(case, t, "A")], times[(case, t, "B")]
            print(
                f"{case:6s} {t} thr  A median {statistics.median(a):8.3f} min {min(a):8.3f}  "
                f"B median {statistics.median(b):8.3f} min {min(b):8.3f}  "
                f"B/A median {statistics.median(b) / statistics.median(a):.3f} "
                f"min {min(b) / min(a):.3f}"
            )
            if not args.layers:
                continue
            la, lb = layers[(case, t, "A")], layers[(case, t, "B")]
            for name in la[0]:
                ma = statistics.median(d.get(name, 0.0) for d in la)
                mb = statistics.median(d.get(name, 0.0) for d in lb)
                print(
                    f"    {name:10s} A {ma:8.3f}  B {mb:8.3f}  "
                    f"B/A {mb / ma if ma else float('nan'):.3f}"
                )


if __name__ == "__main__":
    main()
