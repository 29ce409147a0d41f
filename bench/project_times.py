"""Per-layer projection times after one forward pass, for the figures quoted in closing notes.

    python bench/project_times.py [--threads N]

Builds bench.py's ZFNet and VGG16 trunk (seeded random weights, 1x3x224x224), runs the forward,
then times a deconvnet projection (at="max") of one unit from every conv/linear layer: best of 3,
after one warm-up call (which packs the transposed-conv weights). Prints milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--channel", type=int, default=1)
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    for name in ("zfnet", "vgg16"):
        net = bench.model_net(name)
        t0 = time.perf_counter()
        _, trace = net.forward(x, threads=args.threads)
        print(f"{name}: forward {1e3 * (time.perf_counter() - t0):.1f} ms")
        for layer in (n for n in net.layers if n.startswith(("conv", "fc"))):
            net.project(trace, layer, channel=args.channel, threads=args.threads)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                net.project(
                    trace,
                    layer,
                    channel=args.channel,
                    at="max",
                    rule="deconvnet",
                    threads=args.threads,
                )
                best = min(best, time.perf_counter() - t0)
            print(f"{name}: {layer:8s} {1e3 * best:8.1f} ms")


if __name__ == "__main__":
    main()
