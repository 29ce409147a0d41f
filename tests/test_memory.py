"""Bounded memory and call-history independence (issue 13, section 2).

- Net.project(..., max_memory=) projects a list of channels in chunks that fit the budget, with
  the bits of one batch: kernels whose choice depends on the batch (Winograd or the direct GEMM,
  GEMV or GEMM) choose by the whole batch in every chunk.
- A call's bits are a function of the model, the input, the arguments and the thread count: the
  same mixed sequence run in two orders in fresh processes gives the same bits per call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import history_calls
import models
import numpy as np
import pytest

import pydeconv

HERE = Path(__file__).resolve().parent
RULES = ["deconvnet", "guided", "backprop"]
ATS = ["max", "map", (1, 2)]


def _run_order(order: list[int]) -> dict[int, str]:
    # The pydeconv under test (on PYTHONPATH: tests/conftest.py) and the test helpers.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.environ["PYTHONPATH"], str(HERE)]))
    argv = [sys.executable, str(HERE / "history_calls.py"), ",".join(map(str, order))]
    out = subprocess.run(argv, cwd=HERE, env=env, capture_output=True, text=True, check=True).stdout
    return {int(i): d for i, d in (line.split() for line in out.splitlines())}


def test_results_do_not_depend_on_call_history():
    """Before the fix, 18 of these 46 calls differed between the two orders (a conv's transposed
    conv took Winograd until an earlier call had packed its direct path)."""
    n = len(history_calls.net_and_calls()[2])
    forward = _run_order(list(range(n)))
    backward = _run_order(list(reversed(range(n))))
    assert forward.keys() == backward.keys() == set(range(n))
    differ = [i for i in range(n) if forward[i] != backward[i]]
    assert not differ, f"calls {differ} depend on what ran before them"


@pytest.fixture(scope="module")
def history_net():
    net, x, _ = history_calls.net_and_calls()
    _, trace = net.forward(x, threads=2, keep="all")
    return net, trace


@pytest.fixture(scope="module")
def vgg():
    graph, params = models.vgg_like(size=24)
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + tuple(graph["input"]["shape"]), 31)
    _, trace = net.forward(x, threads=2, keep="all")
    return net, trace


def _budget(net, layer, trace, channels):
    """A max_memory that holds `channels` channels (every sample) of a projection from `layer`."""
    return net._core.projection_bytes_per_sample(layer) * trace.batch * channels


@pytest.mark.parametrize("at", ATS, ids=["max", "map", "yx"])
@pytest.mark.parametrize("rule", RULES)
def test_chunks_give_the_bits_of_one_batch(vgg, rule, at):
    net, trace = vgg
    for layer in ("conv2_2", "pool2", "relu1_2"):
        chans = list(range(16))
        whole = net.project(trace, layer, chans, rule=rule, at=at, threads=2, max_memory=2**62)
        for per in (1, 3, 7):
            seen: list[tuple[int, int]] = []
            got = net.project(
                trace,
                layer,
                chans,
                rule=rule,
                at=at,
                threads=2,
                max_memory=_budget(net, layer, trace, per),
                progress=lambda done, total, seen=seen: seen.append((done, total)),
            )
            np.testing.assert_array_equal(got, whole, err_msg=f"{layer} in chunks of {per}")
            steps = -(-len(chans) // per)
            assert seen == [(min(len(chans), (i + 1) * per), len(chans)) for i in range(steps)]


@pytest.mark.parametrize("rule", RULES)
def test_chunks_choose_kernels_as_one_batch(history_net, rule):
    """Larger maps and channel counts, where Winograd's choice and the linear layer's GEMV/GEMM
    choice depend on the batch size."""
    net, trace = history_net
    cases = (
        ("conv3", list(range(24)), "max"),
        ("conv2", list(range(0, 96, 5)), (2, 3)),
        ("fc", list(range(12)), "max"),
        ("conv4", list(range(10)), "map"),
    )
    for layer, chans, at in cases:
        whole = net.project(trace, layer, chans, rule=rule, at=at, threads=2, max_memory=2**62)
        for per in (1, 5):
            got = net.project(
                trace,
                layer,
                chans,
                rule=rule,
                at=at,
                threads=2,
                max_memory=_budget(net, layer, trace, per),
            )
            np.testing.assert_array_equal(got, whole, err_msg=f"{layer} in chunks of {per}")


def test_default_budget_and_estimate(vgg):
    net, trace = vgg
    assert pydeconv.net.DEFAULT_MAX_MEMORY == 256 * 2**20
    per = net._core.projection_bytes_per_sample("conv2_2")
    # At least the start signal and the input gradient of its first conv, at most every tensor.
    assert 4 * (16 * 12 * 12 + 16 * 24 * 24) <= per <= 4 * 40 * 24 * 24 * 16
    seen = []
    net.project(trace, "conv2_2", [0, 1], progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 2)]  # within the default budget: one chunk


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1e9", True])
def test_bad_max_memory(vgg, bad):
    net, trace = vgg
    with pytest.raises(pydeconv.PydeconvError, match="max_memory"):
        net.project(trace, "conv2_2", [0, 1], max_memory=bad)


def test_progress_exception_ends_the_projection(vgg):
    net, trace = vgg

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.project(
            trace,
            "conv2_2",
            list(range(8)),
            max_memory=_budget(net, "conv2_2", trace, 2),
            progress=stop,
        )


# --- the command line: --max-memory, progress, grid pages ---------------------------------------


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("cli_memory")
    graph, params = models.zfnet_like(seed=0, size=37)
    pydeconv.build(graph, params).save(str(d / "tiny.npz"))
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB").save(d / "img.png")
    return d


def _cli(capsys, *argv):
    from pydeconv.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_max_memory_chunks_with_progress(cli_files, tmp_path, capsys, monkeypatch):
    base = [
        "project",
        cli_files / "tiny.npz",
        cli_files / "img.png",
        "--layer",
        "conv2",
        "--top",
        6,
    ]
    rc, out, err = _cli(capsys, *base, "-o", tmp_path / "one.png")
    assert rc == 0, err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    rc, out2, err = _cli(capsys, *base, "--max-memory", "1K", "-o", tmp_path / "chunks.png")
    assert rc == 0, err
    assert "projected 6/6 channels" in err and "projected 1/6 channels" in err
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "chunks.png").read_bytes()
    assert out.replace("one.png", "x") == out2.replace("chunks.png", "x")


@pytest.mark.parametrize("bad", ["abc", "0", "-5M", "1.5G"])
def test_cli_bad_max_memory(cli_files, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exc:  # a usage error: argparse exits
        _cli(
            capsys,
            "project",
            cli_files / "tiny.npz",
            cli_files / "img.png",
            "--layer",
            "conv2",
            "--max-memory",
            bad,
            "-o",
            tmp_path / "p.png",
        )
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --max-memory" in err and "Traceback" not in err


def test_cli_grid_pages(cli_files, tmp_path, capsys):
    """More channels than a page holds go to further pages, each checked before any work."""
    from PIL import Image

    from pydeconv import report

    n = report.GRID_CHANNELS_PER_PAGE + 5
    chans = [i % 8 for i in range(n)]
    out_png = tmp_path / "p.png"
    (tmp_path / "p-p2.png").write_bytes(b"old")
    argv = [
        "project",
        cli_files / "tiny.npz",
        cli_files / "img.png",
        "--layer",
        "conv1",
        "--channel",
        *chans,
        "-o",
        out_png,
    ]
    rc, _, err = _cli(capsys, *argv)
    assert rc != 0 and "p-p2.png exists" in err and not out_png.exists()
    rc, out, err = _cli(capsys, *argv, "--force")
    assert rc == 0, err
    first, second = Image.open(out_png), Image.open(tmp_path / "p-p2.png")
    assert first.width == second.width and first.height > 5 * second.height
    assert "wrote 2 pages" in out
