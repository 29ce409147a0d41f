"""The activation kinds (issue 14) alone: forward and guided projection of the whole map, fast
kernels against the reference ones, medians over interleaved repetitions.

    python bench/activations.py [--shape 64,112,112] [--threads 1] [--reps 15]

One single-layer net per kind on a seeded standard-normal input of one image; each repetition
times every kind's fast forward, reference forward, fast projection and reference projection in
turn (so host noise hits them alike). The projection starts from the layer's own output with a
signed random signal (rule guided: relu(g) * f'(x) at the rectifying kinds, g * f'(x) at the
others), so it measures the backward kernel plus the engine's per-call work.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import pydeconv

KINDS = [
    ("relu", {}),
    ("leaky_relu", {}),
    ("prelu", {}),
    ("clip", {"min": 0.0, "max": 6.0}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("silu", {}),
    ("hardsigmoid", {}),
    ("hardswish", {}),
    ("mish", {}),
    ("elu", {}),
    ("gelu", {}),
    ("gelu", {"tanh": 1}),
]


def _net(kind, attrs, shape):
    layer = {"name": "a", "kind": kind, "inputs": ["x"], "attrs": attrs}
    params = {}
    if kind == "prelu":
        layer["params"] = {"slope": [shape[0]]}
        params["a/slope"] = np.full(shape[0], 0.1, np.float32)
    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "x", "shape": list(shape)},
        "layers": [layer],
    }
    return pydeconv.build(graph, params)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="64,112,112", help="C,H,W of the one image")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=15)
    args = p.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1,) + shape).astype(np.float32)
    g = rng.standard_normal((1,) + shape).astype(np.float32)
    nets = [(f"{k}{'(tanh)' if a.get('tanh') else ''}", _net(k, a, shape)) for k, a in KINDS]
    traces = {name: net.forward(x, threads=args.threads)[1] for name, net in nets}
    times = {(name, what): [] for name, _ in nets for what in range(4)}
    for _ in range(args.reps):
        for name, net in nets:
            for what in range(4):
                pydeconv.set_reference_kernels(what % 2 == 1)
                t0 = time.perf_counter()
                if what < 2:
                    net.forward(x, threads=args.threads)
                else:
                    net.project(traces[name], "a", at=g, rule="guided", threads=args.threads)
                times[(name, what)].append((time.perf_counter() - t0) * 1e3)
    pydeconv.set_reference_kernels(False)
    print(f"(1, {', '.join(map(str, shape))}), {args.threads} thread(s), medians of {args.reps}")
    print("| kind | forward fast | forward reference | projection fast | projection reference |")
    print("|---|---|---|---|---|")
    for name, _ in nets:
        cells = [f"{statistics.median(times[(name, w)]):.2f} ms" for w in range(4)]
        print(f"| `{name}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
