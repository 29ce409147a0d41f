"""The fast upsample and mul kernels (issue 14) against their reference twins, on the shapes of
the hot paths they were written for: YOLO necks (nearest x2 of a 13x13/20x20 map, an FPN's
bilinear x2), EfficientNet's SE gates (C, 1, 1) and a spatial gate (1, H, W).

    python bench/structure_kernels.py [--threads 1 2] [--reps 20]

One layer per net (mul's gate comes from a global pooling or a channel slice of the input, as in
tests/models.py), batch 1. For each: the median forward and projection (at=array, backprop) in
ms with the fast kernels and with PYDECONV_REFERENCE's twins, interleaved, bench.SETTLE_S apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import models  # noqa: E402

import pydeconv  # noqa: E402

CASES = [
    ("yolov3-tiny upsample", "upsample", (128, 13, 13), {"scale": [2]}),
    ("yolov8 upsample", "upsample", (256, 20, 20), {"scale": [2]}),
    ("fpn bilinear x2", "upsample", (128, 40, 40), {"scale": [2], "bilinear": 1}),
    ("efficientnet se gate", "mul", (672, 14, 14), {"broadcast": "channel"}),
    ("spatial gate", "mul", (64, 80, 80), {"broadcast": "spatial"}),
]


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        time.sleep(0.01)
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    print("| case | kind | threads | fast fwd ms | ref fwd ms | fast proj ms | ref proj ms |")
    print("|---|---|---|---|---|---|---|")
    for name, kind, shape, attrs in CASES:
        graph, params = models.single_layer(kind, shape, attrs, seed=0)
        net = pydeconv.build(graph, params)
        x = models.random_input((1,) + shape, 0)
        for t in args.threads:
            row = {}
            for ref in (False, True):
                pydeconv.set_reference_kernels(ref)
                _, trace = net.forward(x, threads=t)
                g = np.random.default_rng(0).standard_normal(trace.activation(kind).shape)
                g = g.astype(np.float32)
                fwd = median_ms(lambda: net.forward(x, threads=t), args.reps)
                proj = median_ms(
                    lambda: net.project(trace, kind, at=g, rule="backprop", threads=t), args.reps
                )
                row[ref] = (fwd, proj)
            pydeconv.set_reference_kernels(False)
            print(
                f"| {name} | {kind} {shape} | {t} | {row[False][0]:.2f} | {row[True][0]:.2f} | "
                f"{row[False][1]:.2f} | {row[True][1]:.2f} |"
            )


if __name__ == "__main__":
    main()
