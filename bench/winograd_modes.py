"""The Winograd modes side by side, for the figures quoted in closing notes.

    python bench/winograd_modes.py [--threads 2] [--reps 15]

Builds bench.py's VGG16 trunk (seeded random weights, 1x3x224x224) and times, in one process with
the modes interleaved call by call (each call after the benchmark's settle pause), under
pydeconv.set_winograd(mode) for mode in off (False), forced F(2x2) (2), forced F(4x4) (4) and the
default cost model (True):
  - the trunk's forward pass (keep="minimal");
  - each 3x3 conv layer alone (conv + bias, its own one-layer net);
  - the deconvnet projection (at="max") of one conv5_3 and one conv3_3 unit after a forward (the
    channels bench.py uses: the strongest activation's).
Prints medians in ms. Forced modes use that tile size wherever it applies, also where the cost
model would not (tiny projection regions), so "auto" can beat both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import pydeconv  # noqa: E402

MODES = {"off": False, "F2": 2, "F4": 4, "auto": True}


def medians(fn, reps: int) -> dict:
    times = {name: [] for name in MODES}
    for mode in MODES.values():  # warm-up (packs, pool blocks, scratch)
        pydeconv.set_winograd(mode)
        fn()
    for _ in range(reps):
        for name, mode in MODES.items():
            pydeconv.set_winograd(mode)
            time.sleep(bench.SETTLE_S)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    t, reps = args.threads, args.reps
    before = pydeconv.get_winograd()
    ops = bench.vgg16_trunk()
    graph, params, shapes, _ = bench.realise("vgg16-trunk", ops, (3, 224, 224))
    net = pydeconv.build(graph, params)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    print(f"{bench.machine()}\n{t} thread(s), medians of {reps} in ms\n")
    print(f"{'what':<24}" + "".join(f"{name:>9}" for name in MODES))

    def row(what, fn):
        ms = medians(fn, reps)
        print(f"{what:<24}" + "".join(f"{ms[name]:9.2f}" for name in MODES), flush=True)

    try:
        row("forward (minimal)", lambda: net.forward(x, keep="minimal", threads=t))
        prev = "input"
        for op in ops:
            if op[0] == "conv" and op[3] == 3:
                name, (c, h, w) = op[1], shapes[prev]
                g, _, _, _ = bench.realise(name, [op], (c, h, w))
                lp = {k: params[f"{name}/{k}"] for k in ("weight", "bias")}
                one = pydeconv.build(g, {f"{name}/{k}": v for k, v in lp.items()})
                xi = np.random.default_rng(1).standard_normal((1, c, h, w), dtype=np.float32)
                row(
                    f"{name} {c}x{h}x{w}",
                    lambda one=one, xi=xi: one.forward(xi, keep="minimal", threads=t),
                )
            prev = op[1]
        _, trace = net.forward(x)
        for layer in ("conv5_3", "conv3_3"):
            ch = bench.strongest_channel(trace.activation(layer))
            row(
                f"project {layer} ch {ch}",
                lambda layer=layer, ch=ch: net.project(trace, layer, ch, at="max", threads=t),
            )
    finally:
        pydeconv.set_winograd(before)


if __name__ == "__main__":
    main()
