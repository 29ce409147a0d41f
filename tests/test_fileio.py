"""Writing files: only regular files are replaced, temporaries never outlive a write (failure,
SIGINT, SIGTERM, or a process killed outright), and errors name the user's path."""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pydeconv
from pydeconv import fileio
from pydeconv.errors import PydeconvError

# The folder holding the pydeconv under test (site-packages, or a checkout built in place).
ROOT = Path(pydeconv.__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(
    os.name != "posix", reason="FIFOs, device nodes and signals are POSIX"
)


def temporaries(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(fileio.TEMP_PREFIX))


def test_writes_and_replaces_regular_files(tmp_path):
    target = tmp_path / "x.bin"
    fileio.write_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    fileio.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # as a plain open() would make it
    with pytest.raises(PydeconvError, match=r"x\.bin exists \(use --force"):
        fileio.write_atomic(target, b"three", replace=False)
    assert target.read_bytes() == b"two" and temporaries(tmp_path) == []


def test_replace_false_refuses_a_file_that_appears_during_the_write(tmp_path):
    target = tmp_path / "x.bin"

    def writer(tmp):
        Path(tmp).write_bytes(b"new")
        target.write_bytes(b"the user's")  # created by someone else while the work ran

    with pytest.raises(PydeconvError, match="appeared while"):
        fileio.write_via_temp(target, writer, replace=False)
    assert target.read_bytes() == b"the user's" and temporaries(tmp_path) == []


def _fifo(path):
    os.mkfifo(path)
    return "a FIFO"


def _symlink_to_file(path):
    (path.parent / "real.txt").write_bytes(b"target")
    path.symlink_to(path.parent / "real.txt")
    return "a symbolic link"


def _dangling_symlink(path):
    path.symlink_to(path.parent / "nowhere.txt")
    return "a symbolic link"


def _folder(path):
    path.mkdir()
    return "a folder"


def _socket(path):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return "a socket"


@posix_only
@pytest.mark.parametrize("make", [_fifo, _symlink_to_file, _dangling_symlink, _folder, _socket])
@pytest.mark.parametrize("replace", [False, True], ids=["plain", "force"])
def test_refuses_anything_but_a_regular_file(tmp_path, make, replace):
    target = tmp_path / "out.png"
    kind = make(target)
    before = os.lstat(target)
    refused = f"out.png is {kind}; pydeconv only writes regular files"
    with pytest.raises(PydeconvError, match=refused):
        fileio.check_destination(target, replace)
    ran = []
    with pytest.raises(PydeconvError, match=kind):
        fileio.write_via_temp(target, ran.append, replace)
    assert not ran  # refused before any work
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert temporaries(tmp_path) == []
    if make is _symlink_to_file:
        assert (tmp_path / "real.txt").read_bytes() == b"target"  # not written through either


@posix_only
def test_a_fifo_swapped_in_during_the_write_is_kept(tmp_path):
    """The check at rename time: a FIFO that replaces the old file while the work runs stays."""
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def writer(tmp):
        Path(tmp).write_bytes(b"new")
        target.unlink()
        os.mkfifo(target)

    with pytest.raises(PydeconvError, match="out.png is a FIFO"):
        fileio.write_via_temp(target, writer)
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and temporaries(tmp_path) == []


@posix_only
def test_a_fifo_swapped_in_after_the_last_look_is_swapped_back(tmp_path, monkeypatch):
    """The race the exchange closes: the destination was a regular file at the last lstat and is
    a FIFO at the rename. RENAME_EXCHANGE brings the FIFO to the temporary's name, where it is
    seen and put back."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    if not fileio._renameat2(str(a), str(b), fileio._RENAME_EXCHANGE):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    a.unlink()
    b.unlink()
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    real_lstat, regular = os.lstat, os.lstat(target)
    armed = []

    def lstat(path, *args, **kwargs):
        if armed and os.fspath(path) == str(target):
            armed.clear()
            return regular  # the last look still sees the old regular file
        return real_lstat(path, *args, **kwargs)

    def writer(tmp):
        Path(tmp).write_bytes(b"new")
        target.unlink()
        os.mkfifo(target)
        armed.append(1)
        monkeypatch.setattr(os, "lstat", lstat)

    with pytest.raises(PydeconvError, match="out.png is a FIFO"):
        fileio.write_via_temp(target, writer)
    monkeypatch.undo()
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and not armed
    assert temporaries(tmp_path) == []


@posix_only
def test_device_nodes_are_never_replaced(tmp_path):
    """`--force` once replaced /dev/full with a PNG when run as root. A private copy of /dev/null's
    node is used, so a failure cannot hurt the machine; /dev/null itself is only checked."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root (CI runs as root)")
    with pytest.raises(PydeconvError, match="/dev/null is a character device"):
        fileio.check_destination("/dev/null", replace=True)
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("this container may not make device nodes (no CAP_MKNOD)")
    with pytest.raises(PydeconvError, match="null is a character device"):
        fileio.write_atomic(node, b"\x89PNG", replace=True)
    assert stat.S_ISCHR(os.lstat(node).st_mode) and temporaries(tmp_path) == []


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def failing(tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="x.bin: disk full"):
        fileio.write_via_temp(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_errors_name_the_users_path_not_the_temporary(tmp_path):
    target = tmp_path / "picture.png"

    def full_disk(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)

    def no_filename(tmp):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    for writer in (full_disk, no_filename):
        with pytest.raises(OSError) as info:
            fileio.write_via_temp(target, writer)
        assert info.value.filename == str(target)
        assert fileio.TEMP_PREFIX not in str(info.value)
    assert temporaries(tmp_path) == []


def test_a_failing_temporary_names_the_users_path(tmp_path, monkeypatch):
    real_open = os.open

    def refusing_open(path, flags, mode=0o777, **kw):
        if os.path.basename(path).startswith(fileio.TEMP_PREFIX):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(PermissionError) as info:
        fileio.write_atomic(tmp_path / "picture.png", b"x")
    assert info.value.filename == str(tmp_path / "picture.png")
    assert fileio.TEMP_PREFIX not in str(info.value)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@posix_only
def test_stale_temporaries_of_dead_processes_go_live_ones_stay(tmp_path):
    dead = tmp_path / f"{fileio.TEMP_PREFIX}{_dead_pid()}-0123abcd.png"
    dead.write_bytes(b"left by a killed run")
    live_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"{fileio.TEMP_PREFIX}{live_proc.pid}-89abcdef.png"
        live.write_bytes(b"another process is writing this")
        mine = tmp_path / f"{fileio.TEMP_PREFIX}{os.getpid()}-00000000.png"
        mine.write_bytes(b"this process, another thread")
        lookalike = tmp_path / ".pydeconv-tmp-notapid.png"
        lookalike.write_bytes(b"not ours")
        fileio.write_atomic(tmp_path / "out.png", b"new")
        assert not dead.exists()
        assert live.exists() and mine.exists() and lookalike.exists()
        assert (tmp_path / "out.png").read_bytes() == b"new"
    finally:
        live_proc.kill()
        live_proc.wait()
    assert fileio.remove_stale_temporaries(tmp_path) == [live]


@posix_only
def test_handlers_are_installed_only_during_a_write(tmp_path):
    def custom(signum, frame):
        raise SystemExit(3)

    old = signal.signal(signal.SIGTERM, custom)
    try:
        seen = []
        fileio.write_via_temp(
            tmp_path / "x", lambda tmp: seen.append(signal.getsignal(signal.SIGTERM))
        )
        assert seen == [fileio._on_signal]
        assert signal.getsignal(signal.SIGTERM) is custom
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

        def interrupted(tmp):  # the previous handler still decides what a signal does
            Path(tmp).write_bytes(b"half")
            signal.raise_signal(signal.SIGTERM)

        with pytest.raises(SystemExit):
            fileio.write_via_temp(tmp_path / "y", interrupted)
        assert temporaries(tmp_path) == [] and not (tmp_path / "y").exists()
        assert signal.getsignal(signal.SIGTERM) is custom
    finally:
        signal.signal(signal.SIGTERM, old)


SLOW_WRITER = textwrap.dedent("""
    import signal, sys, time
    sys.path.insert(0, sys.argv[2])
    from pydeconv import fileio

    # Python's own dispositions, even where the test runner's shell ignores SIGINT or SIGHUP.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def slow(tmp):
        with open(tmp, "wb") as f:
            f.write(b"x" * 100_000)
            f.flush()
            print("writing", flush=True)
            time.sleep(60)

    fileio.write_via_temp(sys.argv[1], slow)
""")


@posix_only
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_signal_mid_write_leaves_no_temporary(tmp_path, sig):
    target = tmp_path / "out.npy"
    target.write_bytes(b"old")
    # A fresh interpreter: pytest may have handlers of its own.
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(target), str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "writing\n", proc.stderr.read()
        assert temporaries(tmp_path)[0].startswith(f"{fileio.TEMP_PREFIX}{proc.pid}-")
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    # Ended by the signal itself (SIGINT: KeyboardInterrupt, which Python ends with SIGINT too).
    assert proc.returncode == -sig
    assert temporaries(tmp_path) == [] and target.read_bytes() == b"old"


@posix_only
def test_a_write_after_a_kill_removes_the_leftover(tmp_path):
    """SIGKILL leaves the temporary; the next write into the folder removes it."""
    target = tmp_path / "out.npy"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(target), str(ROOT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "writing\n"
    finally:
        proc.kill()
        proc.wait()
    assert len(temporaries(tmp_path)) == 1
    fileio.write_atomic(tmp_path / "other.npy", b"new")
    assert temporaries(tmp_path) == [] and not target.exists()


# --- the command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    """A tiny model and image for the command line."""
    import models
    import numpy as np
    from PIL import Image

    import pydeconv

    d = tmp_path_factory.mktemp("cli_files")
    graph, params = models.zfnet_like(seed=0, size=37)
    pydeconv.build(graph, params).save(str(d / "tiny.npz"))
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (50, 45, 3), dtype=np.uint8), "RGB").save(d / "img.png")
    return d


@posix_only
@pytest.mark.parametrize("make", [_fifo, _symlink_to_file, _folder])
def test_cli_force_refuses_before_the_forward_pass(cli_files, tmp_path, capsys, make):
    from pydeconv.cli import main

    out = tmp_path / "out.png"
    kind = make(out)
    before = os.lstat(out)
    rc = main(
        [
            "project",
            str(cli_files / "tiny.npz"),
            str(cli_files / "img.png"),
            "--layer",
            "conv1",
            "-o",
            str(out),
            "--force",
        ]
    )
    err = capsys.readouterr().err
    # one line, the whole message and nothing else: no progress line of a forward pass before it
    hint = " (links are not followed: give the target's path)" if "link" in kind else ""
    assert rc == 1
    assert err == f"pydeconv: error: {out} is {kind}; pydeconv only writes regular files{hint}\n"
    assert (os.lstat(out).st_ino, os.lstat(out).st_mode) == (before.st_ino, before.st_mode)
    assert temporaries(tmp_path) == []


CLI_SLOW_WRITE = textwrap.dedent("""
    import signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from pydeconv import cli, fileio

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    real = fileio.write_via_temp

    def slow(path, writer, replace=True):  # the real write, then a pause before the rename
        def pausing(tmp):
            writer(tmp)
            print("writing", flush=True)
            time.sleep(60)
        real(path, pausing, replace)

    fileio.write_via_temp = slow
    sys.exit(cli.main(sys.argv[2:]))
""")


@posix_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_cli_killed_mid_write_leaves_nothing(cli_files, tmp_path, sig):
    out = tmp_path / "s.npy"
    argv = [
        "switches",
        cli_files / "tiny.npz",
        cli_files / "img.png",
        "--layer",
        "pool1",
        "-o",
        out,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI_SLOW_WRITE, ROOT, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "writing\n", proc.stderr.read()
        assert len(temporaries(tmp_path)) == 1
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    if sig == signal.SIGINT:  # KeyboardInterrupt: the command's own one-line message and status
        assert proc.returncode == 130 and err.endswith("pydeconv: error: interrupted\n"), err
    else:
        assert proc.returncode == -sig
    assert list(tmp_path.iterdir()) == []
