"""Writing files so that nothing already there is lost: a temporary file in the same folder,
renamed into place only once complete."""

from __future__ import annotations

import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import Callable


def write_atomic(path: str | PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    A crash or a full disk leaves either the old file or none, never a half-written one.
    """
    write_via_temp(path, lambda tmp: Path(tmp).write_bytes(data))


def write_via_temp(path: str | PathLike[str], writer: Callable[[str], object]) -> None:
    """Let ``writer`` fill a temporary path (same folder and suffix as ``path``), then rename it.

    The suffix is kept because some writers (``np.savez``) append one when it is missing.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent or ".")
    os.close(fd)
    try:
        writer(tmp)
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
