"""A report folder written as a whole or not at all.

``with report_folder(out, force) as tmp:`` gives a fresh temporary folder beside ``out``; the
analysis writes its index.html, PNGs and JSON there. Only when the block ends without an error is
the temporary folder moved into place (an existing ``out`` that pydeconv wrote -- it has an
index.html or is empty -- is replaced only with ``force``); on an error or Ctrl-C the temporary
folder is removed and ``out`` is left as it was. So an interrupted run leaves no half-written
report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydeconv.errors import PydeconvError


def check_report_folder(out: str | os.PathLike[str], force: bool) -> Path:
    """Refuse before any work: ``out`` exists and is not an old report (or no ``force``)."""
    path = Path(out)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise PydeconvError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not (path / "index.html").is_file():
            raise PydeconvError(f"{path}: a non-empty folder that is not a pydeconv report")
        if not force:
            raise PydeconvError(f"{path}: exists (use --force to replace it)")
    return path


@contextmanager
def report_folder(out: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    path = check_report_folder(out, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        check_report_folder(path, force)  # again: something may have appeared meanwhile
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
