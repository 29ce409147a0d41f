"""Feature-atlas throughput and memory (issue 15, section 1).

1. Mining images/s on the shipped VGG16 (pydeconv.demo.load_demo_model, 240x240), the demo's
   block layers (block1_conv2 .. block5_conv3), top-9 per channel, against
   - a PyTorch forward-hook top-k loop on the same images (a torch twin of the trunk with the same
     weights; per batch: max over positions per (image, channel), merged into a running top-k),
   - ONNX Runtime's plain forward of the demo's ONNX file (the whole model, head included, on
     already decoded batches: no decoding, no top-k -- its best case),
   interleaved (each round in a fresh seeded order), ``--threads`` threads each.
2. The whole atlas (mining + projections + report) on two layers, once.
3. Peak memory of mining: RSS growth over the loaded model for few vs many images, each count in
   its own process (``--memory-net small``: tests/models.py's vgg_like on 20x20 images, which
   makes 10k images affordable on a small machine; ``vgg16``: the real model).

The images are seeded augmentations (crop, flip, brightness) of the shipped demo photos, written
as JPEGs, so decoding is part of every pydeconv and torch figure.

    python bench/atlas.py --threads 2 --images 32 --reps 3
    python bench/atlas.py --memory-only --memory-net small --counts 1000,10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pydeconv  # noqa: E402
from pydeconv import demo  # noqa: E402
from pydeconv import image as pimg  # noqa: E402
from pydeconv.analysis import atlas, mine  # noqa: E402

LAYERS = ["block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"]
K = 9
SETTLE_S = 0.5


def augmented_images(folder: Path, n: int, seed: int = 0, size: int | None = None) -> list[Path]:
    """n seeded variations of the demo photos (random crop, flip, brightness), as JPEGs."""
    rng = random.Random(seed)
    photos = [Image.open(p).convert("RGB") for p in demo.demo_images()]
    if size is not None:
        photos = [p.resize((size * 2, size * 2)) for p in photos]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x0, y0 = rng.randrange(0, w - cw + 1), rng.randrange(0, h - ch + 1)
        tile = img.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        tile = ImageEnhance.Brightness(tile).enhance(rng.uniform(0.7, 1.3))
        if size is not None:
            tile = tile.resize((size, size))
        path = folder / f"aug{i:05d}.jpg"
        tile.save(path, quality=90)
        out.append(path)
    return out


# --- the PyTorch twin and its hook loop ----------------------------------------------------------


def torch_twin(net, upto: str):
    import torch

    mods, names = [], []
    for layer in net.graph["layers"]:
        kind, name, a = layer["kind"], layer["name"], layer.get("attrs", {})
        if kind == "conv2d":
            w = net.params[f"{name}/weight"]
            m = torch.nn.Conv2d(
                w.shape[1], w.shape[0], tuple(a["kernel_size"]), tuple(a["stride"]),
                tuple(a["padding"][:2]),
            )  # fmt: skip
            assert a["padding"][:2] == a["padding"][2:]
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.array(w)))
                m.bias.copy_(torch.from_numpy(np.array(net.params[f"{name}/bias"])))
        elif kind == "relu":
            m = torch.nn.ReLU()
        elif kind == "max_pool2d":
            m = torch.nn.MaxPool2d(tuple(a["kernel_size"]), tuple(a["stride"]))
        else:
            raise ValueError(f"the torch twin stops at {name} ({kind})")
        mods.append(m)
        names.append(name)
        if name == upto:
            break
    return torch.nn.Sequential(*mods).eval(), names


def torch_hook_miner(net, paths, layers, batch, threads):
    """A forward-hook top-k loop as a PyTorch user writes it: hooks on the chosen convs record
    per (image, channel) the max and argmax; a running top-k per channel (torch.topk)."""
    import torch

    torch.set_num_threads(threads)
    model, names = torch_twin(net, layers[-1])
    state = {}

    def hook_for(layer):
        def hook(module, inp, out):
            flat = out.flatten(2)
            val, pos = flat.max(dim=2)  # (N, C)
            ids = torch.as_tensor(state["ids"]).expand(val.shape[1], -1)  # (C, N)
            v, i, p = state.get(layer, (None, None, None))
            cat_v = val.T if v is None else torch.cat([v, val.T], 1)
            cat_i = ids if i is None else torch.cat([i, ids], 1)
            cat_p = pos.T if p is None else torch.cat([p, pos.T], 1)
            top = torch.topk(cat_v, min(K, cat_v.shape[1]), dim=1)
            state[layer] = (
                top.values,
                torch.gather(cat_i, 1, top.indices),
                torch.gather(cat_p, 1, top.indices),
            )

        return hook

    for layer in layers:
        model[names.index(layer)].register_forward_hook(hook_for(layer))

    def run():
        state.clear()
        with torch.inference_mode():
            for s in range(0, len(paths), batch):
                x = np.stack([pimg.load(p, net)[0] for p in paths[s : s + batch]])
                state["ids"] = list(range(s, s + len(x)))
                model(torch.from_numpy(x))
        return {layer: state[layer] for layer in layers}

    return run


def ort_forward(paths, net, batch, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        str(demo.default_model_path()), opts, providers=["CPUExecutionProvider"]
    )
    name = sess.get_inputs()[0].name
    xs = [
        np.ascontiguousarray(
            np.stack([pimg.load(p, net)[0] for p in paths[s : s + batch]]).transpose(0, 2, 3, 1)
        )
        for s in range(0, len(paths), batch)
    ]

    def run():
        for x in xs:
            sess.run(None, {name: x})

    return run


def interleaved(fns: dict, reps: int) -> dict:
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    order, rng = list(fns), random.Random(0)
    for _ in range(reps):
        rng.shuffle(order)
        for name in order:
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


# --- memory --------------------------------------------------------------------------------------


def vm_hwm() -> float:
    """This process's peak RSS in MiB (VmHWM: unlike getrusage's ru_maxrss, which Linux carries
    over from the parent across fork + exec, it starts afresh in the child)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_child(net_kind: str, folder: str, n: int, batch: int) -> None:
    """Own process: RSS after loading the model and collecting the list, then peak after mining."""
    if net_kind == "small":
        sys.path.insert(0, str(HERE.parent / "tests"))
        import models

        net = pydeconv.build(*models.vgg_like(seed=0, size=20))
        layers = ["conv1_2", "conv2_3"]
    else:
        net = demo.load_demo_model()
        layers = LAYERS
    paths = sorted(Path(folder).glob("*.jpg"))[:n]
    x = np.stack([pimg.load(p, net)[0] for p in paths[:batch]])
    net.forward(x, keep=layers)  # buffers and caches of the first forward: not image-count growth
    base = vm_hwm()
    t0 = time.perf_counter()
    st = mine.mine(net, paths, layers, k=K, batch_size=batch, threads=1)
    dt = time.perf_counter() - t0
    peak = vm_hwm()
    print(json.dumps({"n": n, "base": base, "peak": peak, "s": dt, "done": st.finished}))


def memory_part(net_kind: str, counts: list[int], batch: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        augmented_images(Path(tmp), max(counts), size=24 if net_kind == "small" else None)
        for n in counts:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", net_kind, tmp, str(n), str(batch)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--atlas-layers", default="block1_conv2,block3_conv3")
    ap.add_argument("--memory-net", choices=["small", "vgg16"], default="small")
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        kind, folder, n, batch = args.memory_child
        memory_child(kind, folder, int(n), int(batch))
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    print(f"commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.2f}, threads {args.threads}")  # fmt: skip
    if not args.memory_only:
        pydeconv.set_num_threads(args.threads)
        net = demo.load_demo_model()
        with tempfile.TemporaryDirectory() as tmp:
            paths = augmented_images(Path(tmp), args.images)
            n = len(paths)

            def miner(batch):
                return lambda: mine.mine(
                    net, paths, LAYERS, k=K, batch_size=batch, threads=args.threads
                )

            fns = {
                f"pydeconv mining (batch {args.batch})": miner(args.batch),
                "pydeconv mining (batch 1)": miner(1),
                f"torch hook top-k loop (batch {args.batch})": torch_hook_miner(
                    net, paths, LAYERS, args.batch, args.threads
                ),
                f"ONNX Runtime forward only (batch {args.batch})": ort_forward(
                    paths, net, args.batch, args.threads
                ),
            }
            times = interleaved(fns, args.reps)
            base = np.median(times[f"pydeconv mining (batch {args.batch})"])
            print(f"\n### Mining {', '.join(LAYERS)}, top-{K}, {n} images 240x240, "
                  f"{args.threads} threads, {args.reps} interleaved rounds\n")  # fmt: skip
            print("| what | median s | images/s | pydeconv mining images/s ÷ this |")
            print("|---|---|---|---|")
            for name, ts in times.items():
                med = float(np.median(ts))
                print(f"| {name} | {med:.2f} | {n / med:.2f} | {med / base:.2f}x |")
            layers = args.atlas_layers.split(",")
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                st = mine.mine(net, paths, layers, k=K, batch_size=args.batch)
                t1 = time.perf_counter()
                atlas.write_atlas(net, st, Path(out) / "atlas", threads=args.threads)
                t2 = time.perf_counter()
            units = sum(int((st.ids[layer] >= 0).sum()) for layer in layers)
            print(f"\n### Whole atlas ({', '.join(layers)}, k={K}, {n} images; {units} units "
                  "projected and cut)\n")  # fmt: skip
            print("| step | s | images/s |")
            print("|---|---|---|")
            for name, dt in (("mining", t1 - t0), ("rendering", t2 - t1), ("whole", t2 - t0)):
                print(f"| {name} | {dt:.1f} | {n / dt:.2f} |")
    if not args.no_memory:
        counts = [int(c) for c in args.counts.split(",")]
        rows = memory_part(args.memory_net, counts, args.batch)
        print(f"\n### Peak RSS of mining ({args.memory_net} net, top-{K}, own process each, "
              "VmHWM, MiB)\n")  # fmt: skip
        print("| images | RSS after load + first forward | peak | growth | mining s |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['n']} | {r['base']:.1f} | {r['peak']:.1f} | {r['peak'] - r['base']:.1f} | "
                  f"{r['s']:.1f} |")  # fmt: skip
        first, last = rows[0], rows[-1]
        print(f"\npeak({last['n']}) / peak({first['n']}) = {last['peak'] / first['peak']:.3f}")


if __name__ == "__main__":
    main()
