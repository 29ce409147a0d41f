"""`pydeconv serve` latency and memory on the shipped VGG16 (issue 16's budget).

    python bench/serve.py [--threads 2] [--requests 400] [--cache 512M]

Starts the real server (uvicorn, in a thread of this process) on a free port with the demo model
(pydeconv.demo.load_demo_model(), 3x240x240) and the bundled photos, and times HTTP requests from
a client in this process, request to the last byte of the answer:
- the first forward of each image (GET /api/fmaps of block1_conv1, which runs it);
- the feature-map grid of a layer after that forward: GET /api/fmaps (JSON) + GET /api/fmaps.png
  (the sprite), the first time for that image and layer (nothing derived cached);
- one projection of a conv3/conv4 unit (block3_conv3, block4_conv3; deconvnet, at=max) end to end,
  request -> PNG bytes, with its receptive-field patch separately;
- the process's RSS (VmRSS) after every 100 of --requests mixed requests over the photos, with
  a trace cache of --cache bytes (several photos' traces do not all fit: evictions happen).
Prints medians and maxima in milliseconds, and the RSS table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's pydeconv


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _bytes(text: str) -> int:
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--cache", type=_bytes, default=512 << 20)
    args = ap.parse_args()

    import uvicorn

    from pydeconv import demo
    from pydeconv.serve import make_app

    net = demo.load_demo_model()
    app = make_app(net, [str(demo.DATA_DIR)], threads=args.threads, cache_bytes=args.cache)
    state = app.state.pydeconv
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def get(path: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        ms = (time.perf_counter() - t0) * 1e3
        if r.status != 200:
            sys.exit(f"{path}: {r.status} {body[:200]!r}")
        return ms, body

    images = [im["id"] for im in json.loads(get("/api/images")[1])["images"]]
    rss0 = _rss_mib()
    rows: list[tuple[str, list[float]]] = []

    forwards = [get(f"/api/fmaps?image={i}&layer=block1_conv1")[0] for i in images]
    rows.append(("first forward + block1_conv1 grid JSON", forwards))
    for layer in ("block1_conv2", "block3_conv3", "block4_conv3", "block5_conv3"):
        times = []
        for i in images:
            get(f"/api/image/{i}.png")  # the trace is in the cache (fits: 4 photos < budget?)
            q = f"image={i}&layer={layer}"
            t_json, _ = get(f"/api/fmaps?{q}")
            t_png, _ = get(f"/api/fmaps.png?{q}")
            times.append(t_json + t_png)
        rows.append((f"grid of {layer} (JSON + sprite PNG)", times))
    for layer in ("block3_conv3", "block4_conv3"):
        i = images[-1]
        get(f"/api/image/{i}.png")
        meta = json.loads(get(f"/api/fmaps?image={i}&layer={layer}")[1])
        proj, patch = [], []
        for c in meta["order"][:10]:
            proj.append(get(f"/api/project?image={i}&layer={layer}&channel={c}")[0])
            patch.append(get(f"/api/patch?image={i}&layer={layer}&channel={c}")[0])
        rows.append((f"projection {layer} (deconvnet, max) -> PNG", proj))
        rows.append((f"patch {layer}", patch))

    print(
        f"pydeconv serve on VGG16 {tuple(net.input_shape)}, {args.threads} threads, "
        f"{len(images)} photos, cache {args.cache >> 20} MiB; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'request':48s} {'n':>3s} {'median ms':>10s} {'max ms':>8s}")
    for name, t in rows:
        print(f"{name:48s} {len(t):3d} {statistics.median(t):10.1f} {max(t):8.1f}")

    layers = ("block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")
    print(
        f"\nRSS (MiB) over {args.requests} mixed requests (grids, projections over "
        f"{len(images)} photos; start {rss0:.0f} MiB before the first forward)"
    )
    print(
        f"{'requests':>8s} {'RSS MiB':>8s} {'cached traces':>14s} {'cache MiB':>10s} "
        f"{'forwards':>9s}"
    )
    for n in range(args.requests):
        i = images[n % len(images)]
        layer = layers[(n // len(images)) % len(layers)]
        if n % 2:
            get(f"/api/fmaps.png?image={i}&layer={layer}")
        else:
            get(f"/api/project?image={i}&layer={layer}&channel={n % 64}&rule=guided")
        if (n + 1) % 100 == 0:
            c = state.cache_state()
            print(
                f"{n + 1:8d} {_rss_mib():8.0f} {c['entries']:14d} {c['bytes'] / 2**20:10.0f} "
                f"{c['forwards']:9d}"
            )
    server.should_exit = True


if __name__ == "__main__":
    main()
