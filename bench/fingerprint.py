"""Bit-level fingerprints of the engine's results, to show that a speed change kept every bit.

    python bench/fingerprint.py [--threads 2] > before.txt   # at one commit
    python bench/fingerprint.py [--threads 2] > after.txt    # at another
    diff before.txt after.txt                                 # empty: the same bits

Runs bench.py's ZFNet and VGG16 trunk (seeded random weights, one seeded 1x3x224x224 input) under
each Winograd mode (auto, off, F(2x2), F(4x4)) with keep="all", and prints a SHA-256 prefix of
every layer's output, of the ReLU/switch-dependent projections of one unit of a middle and of the
last conv layer (all three rules, at="max"), and of a batched 4-channel projection. Only
comparable between builds on the same CPU (the GEMM's ISA decides the last bits) and with the
same thread count for the reductions that depend on it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import pydeconv  # noqa: E402

UNITS = {"zfnet": [("conv3", 7), ("conv5", 100)], "vgg16": [("conv3_3", 86), ("conv5_3", 256)]}


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    for model in ("zfnet", "vgg16"):
        net = bench.model_net(model)
        for mode in (True, False, 2, 4):
            pydeconv.set_winograd(mode)
            _, trace = net.forward(x, keep="all", threads=args.threads)
            tag = f"{model} winograd={mode}"
            for name in trace.layers:
                print(f"{tag} forward {name} {digest(trace.activation(name))}")
            for layer, ch in UNITS[model]:
                for rule in ("deconvnet", "guided", "backprop"):
                    p = net.project(trace, layer, ch, at="max", rule=rule, threads=args.threads)
                    print(f"{tag} project {layer}:{ch} {rule} {digest(p)}")
                p = net.project(trace, layer, [0, 1, 2, 3], at="max", threads=args.threads)
                print(f"{tag} project {layer}:0-3 {digest(p)}")
    pydeconv.set_winograd(True)


if __name__ == "__main__":
    main()
