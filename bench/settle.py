"""How long ONNX Runtime's workers keep the cores busy after a call: the basis of bench.py's
SETTLE_S.

    python bench/settle.py [--pause 0.05 0.2] [--reps 25]

ZFNet forward (bench.py's seeded weights), 2 threads. For each pause, 25 rounds of: run engine A,
sleep `pause`, time engine B, for (A, B) in pydeconv/pydeconv, ONNX Runtime/pydeconv, ONNX
Runtime/ONNX Runtime and pydeconv/ONNX Runtime. Prints medians and minima in ms. A B timed
slower after A than after itself means A's workers still spun when B started.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import pydeconv  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pause", type=float, nargs="+", default=[0.05, 0.2])
    ap.add_argument("--reps", type=int, default=25)
    args = ap.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("settle.py needs onnxruntime")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    graph, params, _, _ = bench.realise("zfnet", bench.zfnet(), (3, 224, 224))
    net = pydeconv.build(graph, params)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 2, 1, 3
    sess = ort.InferenceSession(
        bench.onnx_bytes(graph, params), so, providers=["CPUExecutionProvider"]
    )
    engines = {
        "pydeconv": lambda: net.forward(x, threads=2, keep="minimal"),
        "onnxruntime": lambda: sess.run(None, {"input": x}),
    }
    for fn in engines.values():
        fn()
    pairs = [
        ("pydeconv", "pydeconv"),
        ("onnxruntime", "pydeconv"),
        ("onnxruntime", "onnxruntime"),
        ("pydeconv", "onnxruntime"),
    ]
    for pause in args.pause:
        times = {pair: [] for pair in pairs}
        for _ in range(args.reps):
            for before, timed in pairs:
                time.sleep(bench.SETTLE_S)
                engines[before]()
                time.sleep(pause)
                t0 = time.perf_counter()
                engines[timed]()
                times[(before, timed)].append(time.perf_counter() - t0)
        for (before, timed), ts in times.items():
            print(
                f"pause {1e3 * pause:5.0f} ms: {timed:12s} after {before:12s} "
                f"median {1e3 * statistics.median(ts):6.2f} min {1e3 * min(ts):6.2f} ms"
            )


if __name__ == "__main__":
    main()
