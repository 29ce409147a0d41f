"""Runs the C++ example (built against the installed CMake package) and checks that it gives the
same picture as the Python helpers: same preprocessing, same projection, same rendering.

usage: python tests/cpp/check_example.py PATH/TO/deconv_project
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import zfnet_like  # noqa: E402

import pydeconv  # noqa: E402


def main(exe: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        graph, params = zfnet_like(seed=3, size=45)
        graph["preprocess"] = {
            "channel_order": "BGR",
            "scale": 1 / 255,
            "mean": [0.4, 0.5, 0.6],
            "std": [0.2, 0.25, 0.3],
        }
        model = Path(tmp) / "model.npz"
        pydeconv.build(graph, params).save(model)
        rng = np.random.default_rng(0)
        img = Image.fromarray(
            rng.integers(0, 256, size=(61, 53, 3), dtype=np.uint8)
        )  # resized to 45x45
        ppm = Path(tmp) / "image.ppm"
        img.save(ppm)
        failures = 0
        for layer, channel in (("conv2", 5), ("relu4", 3), ("pool3", 7)):
            out = Path(tmp) / f"{layer}.ppm"
            res = subprocess.run(
                [exe, str(model), str(ppm), layer, str(channel), str(out)],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                print(f"FAIL {layer}: exit {res.returncode}: {res.stderr.strip()}")
                failures += 1
                continue
            got = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
            net = pydeconv.load(model)
            x = pydeconv.image.load(ppm, net)
            _, trace = net.forward(x, upto=layer)
            proj, where = net.project(
                trace, layer, channel=channel, at="max", rule="deconvnet", return_positions=True
            )
            want = np.asarray(
                pydeconv.image.render(proj[0], net.preprocess["channel_order"]), dtype=np.int16
            )
            diff = np.abs(got - want)
            # Same engine, same thread count: identical bytes, up to a rounding tie in the last
            # level.
            ok = got.shape == want.shape and diff.max() <= 1 and (diff > 0).mean() < 0.01
            ok = (
                ok and f"at ({where[0][0]}, {where[0][1]})" in res.stdout
            )  # the same position chosen
            print(
                f"{'PASS' if ok else 'FAIL'} {layer} channel {channel}: {got.shape}, "
                f"max diff {diff.max()}, differing {(diff > 0).mean():.4f}"
            )
            failures += not ok
        bad = subprocess.run(
            [exe, str(model), str(ppm), "nope", "0", str(Path(tmp) / "x.ppm")],
            capture_output=True,
            text=True,
        )
        ok = bad.returncode != 0 and "nope" in bad.stderr and bad.stderr.count("\n") == 1
        print(
            f"{'PASS' if ok else 'FAIL'} unknown layer: exit {bad.returncode}, {bad.stderr.strip()}"
        )
        failures += not ok
        print(f"{4 - failures} passed, {failures} failed")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
