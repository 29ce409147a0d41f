"""ONNX Runtime's own per-node times for bench.py's models, to set against bench/layer_times.py.

    python bench/ort_layers.py [--model zfnet|vgg16] [--threads 2] [--reps 30]

Writes bench.py's model (seeded random weights, 1x3x224x224) to ONNX as bench.py does, runs it
`reps` times in ONNX Runtime with profiling on (each run after bench.SETTLE_S), and prints each
node's median kernel time over the runs after the first five. ONNX Runtime fuses and reorders:
a conv's row carries its ReLU ("relu_N_out_nchwc" names the fused conv + ReLU), and "Reorder*"
rows are its layout conversions. Needs onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["zfnet", "vgg16"], default="zfnet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("ort_layers.py needs onnxruntime (pip install onnxruntime)")
    ops = bench.zfnet() if args.model == "zfnet" else bench.vgg16_trunk()
    graph, params, _, _ = bench.realise(args.model, ops, (3, 224, 224))
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    so.log_severity_level = 3
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(
            bench.onnx_bytes(graph, params), so, providers=["CPUExecutionProvider"]
        )
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
        for _ in range(args.reps):
            time.sleep(bench.SETTLE_S)
            sess.run(None, {"input": x})
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    times: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times.setdefault(e["name"][: -len("_kernel_time")], []).append(e["dur"] / 1e3)
    print(
        f"onnxruntime {ort.__version__}, {args.model}, {args.threads} thread(s), "
        f"runs 6..{args.reps}: median ms per node"
    )
    total = 0.0
    for name, ts in times.items():
        med = statistics.median(ts[5:])
        total += med
        print(f"{name:28s} {med:8.3f}")
    print(f"{'(sum of nodes)':28s} {total:8.3f}")


if __name__ == "__main__":
    main()
