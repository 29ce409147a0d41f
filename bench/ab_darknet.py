"""The real YOLOv3-tiny forward (416x416, keep='minimal') of two pydeconv builds and OpenCV's dnn
module, interleaved call by call.

    python bench/ab_darknet.py --base /path/to/other/checkout [--threads 2] [--reps 11]

Each build runs in a child process of its own (two builds cannot share one interpreter) and
the parent runs OpenCV itself (needs opencv-python-headless); the parent calls the three in turn,
rotating the order every round, with a pause before each call. Prints each engine's median and
minimum, the ratios to OpenCV and between the builds, the largest difference between the two
builds' first head, each build's net.cache_bytes() and peak RSS. Build both checkouts first
(each needs its pydeconv/_core*.so in place); the YOLOv3-tiny files come from the user cache
(pydeconv.fetch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 416

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, pydeconv
from pydeconv.fetch import fetch_yolov3_tiny
f = fetch_yolov3_tiny()
net = pydeconv.load(f["cfg"], weights=f["weights"], preprocess={"size": [416, 416]})
x = np.random.default_rng(3).random((1, 3, 416, 416), dtype=np.float32)
th = int(sys.argv[2])
out, _ = net.forward(x, threads=th, keep="minimal")
np.save(sys.argv[3], out[net.outputs[0]] if isinstance(out, dict) else out)
print(json.dumps({"module": pydeconv.__file__, "cache": net.cache_bytes()}), flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    net.forward(x, threads=th, keep="minimal")
    print(json.dumps({"ms": 1e3 * (time.perf_counter() - t0)}), flush=True)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_mib": rss / 1024}), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", required=True, help="the other checkout (its pydeconv/ is built)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--pause", type=float, default=0.1, help="seconds before each call")
    args = ap.parse_args()
    import tempfile

    import cv2

    tmp = Path(tempfile.mkdtemp())
    kids = {}
    for name, root in (("base", args.base), ("this", str(HERE.parent))):
        cmd = [sys.executable, "-c", CHILD, root, str(args.threads), str(tmp / f"{name}.npy")]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdin is not None and p.stdout is not None
        info = json.loads(p.stdout.readline())
        print(f"{name}: {info['module']}, cache_bytes {info['cache'] / 1e6:.1f} MB")
        kids[name] = p
    diff = float(np.abs(np.load(tmp / "base.npy") - np.load(tmp / "this.npy")).max())
    print(f"max |this - base| on the first head: {diff:.3g}")

    sys.path.insert(0, str(HERE.parent))
    from pydeconv.fetch import fetch_yolov3_tiny

    files = fetch_yolov3_tiny()
    cv = cv2.dnn.readNetFromDarknet(str(files["cfg"]), str(files["weights"]))
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv2.setNumThreads(args.threads)
    heads = cv.getUnconnectedOutLayersNames()
    x = np.random.default_rng(3).random((1, 3, SIZE, SIZE), dtype=np.float32)

    def opencv() -> float:
        t0 = time.perf_counter()
        cv.setInput(x)
        cv.forward(heads)
        return 1e3 * (time.perf_counter() - t0)

    def child(name: str) -> float:
        p = kids[name]
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("go\n")
        p.stdin.flush()
        return float(json.loads(p.stdout.readline())["ms"])

    fns = {"base": lambda: child("base"), "this": lambda: child("this"), "opencv dnn": opencv}
    for fn in fns.values():  # warm-up
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(args.reps):
        for k in order[r % 3 :] + order[: r % 3]:
            time.sleep(args.pause)
            times[k].append(fns[k]())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nYOLOv3-tiny forward 1x3x{SIZE}x{SIZE}, {args.threads} threads, {args.reps} rounds")
    print("| engine | median ms | min ms | time / OpenCV |\n|---|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {med[k]:.1f} | {min(v):.1f} | {med[k] / med['opencv dnn']:.2f}x |")
    print(f"\nthis / base = {med['this'] / med['base']:.3f}")
    for name, p in kids.items():
        assert p.stdin is not None and p.stdout is not None
        p.stdin.close()
        print(f"{name}: peak RSS {json.loads(p.stdout.read())['rss_mib']:.0f} MiB")
        p.wait()


if __name__ == "__main__":
    main()
