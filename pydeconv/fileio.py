"""Writing files so that nothing the user owns is lost or damaged.

- Only regular files are replaced. A folder, symbolic link, FIFO, socket or device node at the
  destination is refused, ``--force`` or not: ``--force`` once replaced ``/dev/full`` (as root) and
  FIFOs with PNGs. A symbolic link is refused rather than followed: writing through it would let a
  link planted in a shared folder aim a root-run command at any file. The check runs before any
  work (:func:`check_destination`) and again atomically at the rename.
- The data goes to a temporary in the same folder, ``.pydeconv-tmp-<pid>-<token><suffix>``, renamed
  into place only once complete: a crash or a full disk leaves the old file or none, never half
  of one.
- SIGINT, SIGTERM and SIGHUP during a write remove the temporary before the signal takes its
  previous effect; a temporary left by a process killed outright (SIGKILL, power loss) is removed
  by the next write into that folder, once its process is gone.
- Errors name the user's path, never the temporary's.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from os import PathLike
from pathlib import Path
from typing import Any

from .errors import PydeconvError

TEMP_PREFIX = ".pydeconv-tmp-"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-[0-9a-f]+")
# Signals whose default action ends the process; SIGINT normally raises KeyboardInterrupt instead.
_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_active: set[str] = set()  # temporaries being written by this process (a signal handler reads it)
_previous: dict[int, Any] = {}  # the handlers ours replaced while a write is in progress


def write_atomic(path: str | PathLike[str], data: bytes, replace: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    write_via_temp(path, write, replace)


def write_via_temp(
    path: str | PathLike[str], writer: Callable[[str], object], replace: bool = True
) -> None:
    """Let ``writer`` fill a temporary path (same folder and suffix as ``path``), then rename it.

    ``replace=False`` refuses an existing file, also one that appears while ``writer`` runs.
    Anything but a regular file at ``path`` is always refused. The suffix is kept because some
    writers (``np.savez``) append one when it is missing.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {str(path.parent)!r} does not exist")
    check_destination(path, replace)
    remove_stale_temporaries(path.parent)
    tmp = ""
    try:
        with _removing_temporaries_on_signals():
            tmp = _create_temporary(path)
            try:
                writer(tmp)
                _rename_into_place(tmp, path, replace)
            finally:
                _remove(tmp)
                _active.discard(tmp)
    except OSError as exc:
        raise _naming(exc, tmp, path) from None


# --- the destination ------------------------------------------------------------------------------


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, words in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def _refuse_kind(path: Path, mode: int) -> None:
    kind = _kind(mode)
    if kind is None:
        return
    hint = " (links are not followed: give the target's path)" if stat.S_ISLNK(mode) else ""
    raise PydeconvError(f"{path} is {kind}; pydeconv only writes regular files{hint}")


def check_destination(path: str | PathLike[str], replace: bool = True) -> None:
    """Refuse ``path`` unless it is absent, or a regular file and ``replace`` is set."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    _refuse_kind(path, st.st_mode)
    if not replace:
        raise PydeconvError(f"{path} exists (use --force to overwrite)")


# --- temporaries ----------------------------------------------------------------------------------


def _create_temporary(path: Path) -> str:
    suffix = path.suffix if len(path.suffix) <= 32 else ""
    # Signals are held while the file is made and recorded, so a handler never misses one.
    with _signals_blocked():
        while True:
            name = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}{suffix}"
            tmp = os.path.join(path.parent, name)
            try:
                # mode 0o666 less the umask: the permissions a plain open() would give.
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            _active.add(tmp)
            return tmp


def _remove(tmp: str) -> None:
    """Remove a temporary, unless a race left something other than our regular file there."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISREG(os.lstat(tmp).st_mode):
            os.remove(tmp)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale_temporaries(folder: str | PathLike[str]) -> list[Path]:
    """Remove the temporaries in ``folder`` left by processes that no longer exist.

    Another live process's temporary is kept (it is still being written), and so is one whose PID
    has been reused since; only regular files are removed. Best effort: returns what went. A writer
    in another PID namespace (a container sharing the folder) looks dead: its temporary may go,
    and then its rename fails with an error naming its path; no finished file is touched.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.remove(entry.path)
                removed.append(Path(entry.path))
    return removed


# --- signals --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _on_signal(signum: int, frame: object) -> None:
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        # KeyboardInterrupt and the like unwind through write_via_temp, which removes the
        # temporary; a handler that returns lets the write go on.
        previous(signum, frame)
        return
    # The default action ends the process without unwinding: clean up first, then end it by the
    # same signal so that the parent sees the true cause.
    for tmp in list(_active):
        with contextlib.suppress(OSError):
            _remove(tmp)
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    raise SystemExit(128 + signum)  # not reached: the default action ends the process


@contextlib.contextmanager
def _removing_temporaries_on_signals() -> Iterator[None]:
    """Install :func:`_on_signal` while a write runs (main thread only; signal.signal's rule).

    Ignored signals stay ignored, handlers not set from Python are left alone, and a nested write
    finds ours already there. The previous handlers come back afterwards unless someone replaced
    ours in between.
    """
    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            handler = signal.getsignal(sig)
            if handler in (signal.SIG_IGN, None) or handler is _on_signal:
                continue
            _previous[sig] = handler
            signal.signal(sig, _on_signal)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, _previous[sig])
            _previous.pop(sig, None)


# --- the rename -----------------------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_UNSUPPORTED = {
    errno.EINVAL,
    errno.ENOSYS,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.EPERM,
    errno.EXDEV,
}
_renameat2_fn: list = []


def _renameat2(src: str, dst: str, flags: int) -> bool:
    """Linux renameat2(2). False where the C library or the file system lacks it."""
    if not _renameat2_fn:
        fn = None
        with contextlib.suppress(OSError, AttributeError):
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_uint,
            ]
            fn.restype = ctypes.c_int
        _renameat2_fn.append(fn)
    fn = _renameat2_fn[0]
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), dst)


def _rename_into_place(tmp: str, path: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``path`` only if ``path`` is absent, or (``replace``) a regular file.

    Atomic where Linux's renameat2 works: RENAME_NOREPLACE for a new name, RENAME_EXCHANGE for an
    existing one (the old entry comes back to ``tmp``, is looked at, and swapped back if it is no
    longer a regular file). Elsewhere a last lstat just before the rename leaves a tiny window.
    """
    with _signals_blocked():  # a signal between the exchange and the swap back must wait
        _rename_or_exchange(tmp, path, replace)


def _rename_or_exchange(tmp: str, path: Path, replace: bool) -> None:
    for _ in range(8):  # the destination changes under us: look again
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            try:
                if _renameat2(tmp, str(path), _RENAME_NOREPLACE):
                    return
            except FileExistsError:
                continue
            try:
                os.link(tmp, path)  # fails if anything appeared at path
                return
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
            os.replace(tmp, path)
            return
        _refuse_kind(path, st.st_mode)
        if not replace:
            raise PydeconvError(
                f"{path} appeared while it was being written (use --force to overwrite)"
            )
        try:
            exchanged = _renameat2(tmp, str(path), _RENAME_EXCHANGE)
        except FileNotFoundError:
            continue
        if not exchanged:
            os.replace(tmp, path)
            return
        old = os.lstat(tmp)
        if stat.S_ISREG(old.st_mode):
            return  # the old file is at tmp now; the caller removes it
        _renameat2(tmp, str(path), _RENAME_EXCHANGE)  # put the newcomer back
        _refuse_kind(path, old.st_mode)
    raise PydeconvError(f"{path} keeps changing while it is being written")


def _naming(exc: OSError, tmp: str, path: Path) -> OSError:
    """``exc`` about ``path`` instead of the temporary (one without a path gets ``path``)."""
    if exc.errno is not None and exc.strerror:
        ours = os.path.join(path.parent, TEMP_PREFIX)
        if exc.filename in (None, tmp) or str(exc.filename).startswith(ours):
            return OSError(exc.errno, exc.strerror, os.fspath(path))
        return exc
    text = str(exc).replace(tmp, os.fspath(path)) if tmp else str(exc)
    text = text if os.fspath(path) in text else f"{path}: {text}"
    try:
        return type(exc)(text)
    except TypeError:  # a subclass with its own constructor
        return OSError(text)
