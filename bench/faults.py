"""Page faults and kernel (system) time per call, for the figures quoted in closing notes.

    python bench/faults.py [--threads 2] [--calls 10] [--model vgg16|zfnet]

Builds bench.py's VGG16 trunk (or ZFNet; seeded random weights, 1x3x224x224) and, after warm-up
calls, reports per call (getrusage of this process): wall ms, minor page faults, system CPU ms, for
  - forward with keep="minimal" and with keep="all";
  - VGG16 only: the deconvnet projection (at="max") of one conv5_3 unit (channel 256, central: its
    receptive field covers most of the image) and one conv3_3 unit (channel 86), after a forward.
Run it on an older commit to compare (e.g. 5c5a805, before the buffer pool).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def per_call(fn, calls: int) -> str:
    for _ in range(2):
        fn()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(calls):
        fn()
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    return (
        f"{1e3 * wall / calls:7.1f} ms  {(r1.ru_minflt - r0.ru_minflt) / calls:8.0f} faults  "
        f"{1e3 * (r1.ru_stime - r0.ru_stime) / calls:6.1f} ms system"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--model", choices=["vgg16", "zfnet"], default="vgg16")
    args = ap.parse_args()
    t, calls = args.threads, args.calls
    net = bench.model_net(args.model)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    for keep in ("minimal", "all"):
        print(
            f"forward keep={keep:8s}", per_call(lambda: net.forward(x, threads=t, keep=keep), calls)
        )
    if args.model != "vgg16":
        return
    for layer, ch in (("conv5_3", 256), ("conv3_3", 86)):
        _, trace = net.forward(x, threads=t, keep=[layer])
        print(
            f"project {layer} ch {ch:3d}  ",
            per_call(lambda: net.project(trace, layer, ch, at="max", threads=t), calls),
        )


if __name__ == "__main__":
    main()
