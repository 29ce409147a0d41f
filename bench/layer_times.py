"""Per-layer forward (or projection) times, medians over repeated calls, for the figures quoted
in closing notes.

    python bench/layer_times.py [--model zfnet|vgg16] [--threads 2] [--reps 40]
                                [--project LAYER:CHANNEL]

Builds bench.py's model (seeded random weights, 1x3x224x224) and runs `reps` forwards
(keep='minimal', each after bench.SETTLE_S) in a child process with PYDECONV_PROFILE=1, which makes
the engine print each layer's time to stderr. Prints each layer's median and minimum in ms, over
the calls after the first five, and the whole call's. With --project, one forward
(keep=[LAYER]) and then `reps` deconvnet projections of that unit (at="max"): each layer's
share of the way down.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def child(model: str, threads: int, reps: int, project: str) -> None:
    net = bench.model_net(model)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    if project:
        layer, channel = project.split(":")
        _, trace = net.forward(x, threads=threads, keep=[layer])
        print("#start", file=sys.stderr, flush=True)  # the forward's lines end here
    for _ in range(reps):
        time.sleep(bench.SETTLE_S)
        t0 = time.perf_counter()
        if project:
            net.project(trace, layer, int(channel), at="max", threads=threads)
        else:
            net.forward(x, threads=threads, keep="minimal")
        print(f"#total {1e3 * (time.perf_counter() - t0):.3f}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["zfnet", "vgg16"], default="zfnet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--project", default="", help="LAYER:CHANNEL: time that unit's projection")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.model, args.threads, args.reps, args.project)
        return
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--model",
        args.model,
        "--threads",
        str(args.threads),
        "--reps",
        str(args.reps),
        "--project",
        args.project,
    ]
    err = subprocess.run(
        cmd, env={**os.environ, "PYDECONV_PROFILE": "1"}, capture_output=True, text=True, check=True
    ).stderr
    if args.project:
        err = err.split("#start", 1)[1]
    phase, what = (
        ("project", f"projections of {args.project}") if args.project else ("forward", "forwards")
    )
    times = collections.defaultdict(list)
    for line in err.splitlines():
        m = re.match(rf"pydeconv {phase} \S+\s+(\S+)\s+([\d.]+) ms", line)
        if m:
            times[m.group(1)].append(float(m.group(2)))
        m = re.match(r"#total ([\d.]+)", line)
        if m:
            times[f"({phase})"].append(float(m.group(1)))
    print(f"{args.model}, {args.threads} thread(s), {what} 6..{args.reps}: median / min ms")
    for name, ts in times.items():
        ts = ts[5:]
        print(f"{name:10s} {statistics.median(ts):8.2f} {min(ts):8.2f}")


if __name__ == "__main__":
    main()
