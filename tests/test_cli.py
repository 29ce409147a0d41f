"""The command line: every subcommand on a tiny model written here, error exits, --force.

Commands run in-process through ``pydeconv.cli.main`` (fast, output captured by capsys); one test
runs ``python -m pydeconv`` for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import models
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import image as pimg
from pydeconv.cli import main

ROOT = Path(__file__).resolve().parent.parent
PREPROCESS = {
    "size": [37, 37],
    "channel_order": "RGB",
    "scale": 1 / 255,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny ZFNet-like model as .npz and one photo-like input image."""
    d = tmp_path_factory.mktemp("cli")
    graph, params = models.zfnet_like(seed=0, size=37)
    graph["preprocess"] = dict(PREPROCESS)
    pydeconv.build(graph, params).save(str(d / "tiny.npz"))
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (50, 45, 3), dtype=np.uint8), "RGB").save(d / "img.png")
    return d


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *words):
    assert rc != 0
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("pydeconv: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err  # progress lines may come before it
    assert "Traceback" not in err
    for w in words:
        assert w in errors[0], (w, err)


def no_temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".")] == []


def test_info(files, capsys):
    rc, out, _ = run(capsys, "info", files / "tiny.npz", "--threads", 1)
    assert rc == 0
    net = pydeconv.load(str(files / "tiny.npz"))
    for row in net.info():
        assert row["name"] in out
    line = next(ln for ln in out.splitlines() if ln.startswith("conv1 "))
    assert line.split()[:3] == ["conv1", "conv2d", "8x18x17"]
    assert f"{3 * 8 * 7 * 7 + 8:,}" in line.split()[-1]
    assert "total parameters: " in out


def test_project_top(files, tmp_path, capsys):
    out_png = tmp_path / "p.png"
    rc, out, err = run(
        capsys,
        "project",
        files / "tiny.npz",
        files / "img.png",
        "--layer",
        "conv2",
        "--top",
        4,
        "-o",
        out_png,
        "--threads",
        2,
    )
    assert rc == 0, err
    img = Image.open(out_png)
    assert img.mode == "RGB" and img.width > 6 * 96 and img.height > 2 * 96  # 4 pairs: 3 + 1 rows
    # the four strongest channels of conv2 for this image, strongest first
    net = pydeconv.load(str(files / "tiny.npz"))
    _, trace = net.forward(pimg.load(files / "img.png", net))
    strength = trace.activation("conv2")[0].max(axis=(1, 2))
    expected = list(np.argsort(-strength, kind="stable")[:4])
    got = [
        int(ln.split("channel ")[1].split(":")[0])
        for ln in out.splitlines()
        if ln.startswith("conv2 channel")
    ]
    assert got == expected
    assert "forward" in err and no_temp_files(tmp_path)


@pytest.mark.parametrize("at", ["max", "map", "1,2"])
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "backprop"])
def test_project_channels_at_rule(files, tmp_path, capsys, at, rule):
    out_png = tmp_path / "p.png"
    rc, out, err = run(
        capsys,
        "project",
        files / "tiny.npz",
        files / "img.png",
        "--layer",
        "relu2",
        "--channel",
        0,
        5,
        "--at",
        at,
        "--rule",
        rule,
        "-o",
        out_png,
    )
    assert rc == 0, err
    assert Image.open(out_png).size[0] > 4 * 96
    assert sum(ln.startswith("relu2 channel") for ln in out.splitlines()) == 2


def test_switches(files, tmp_path, capsys):
    out_npy = tmp_path / "s.npy"
    rc, _, err = run(
        capsys, "switches", files / "tiny.npz", files / "img.png", "--layer", "pool1", "-o", out_npy
    )
    assert rc == 0, err
    got = np.load(out_npy)
    net = pydeconv.load(str(files / "tiny.npz"))
    _, trace = net.forward(pimg.load(files / "img.png", net))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, trace.switches("pool1"))


def test_switches_needs_a_pool(files, tmp_path, capsys):
    rc, _, err = run(
        capsys,
        "switches",
        files / "tiny.npz",
        files / "img.png",
        "--layer",
        "conv1",
        "-o",
        tmp_path / "s.npy",
    )
    assert_one_line_error(rc, err, "conv1", "max_pool2d")
    assert not (tmp_path / "s.npy").exists()


def test_demo_command(files, tmp_path, capsys):
    out_dir = tmp_path / "demo"
    rc, out, err = run(
        capsys, "demo", "-o", out_dir, "--image", files / "img.png", "--model", files / "tiny.npz"
    )
    assert rc == 0, err
    assert (out_dir / "index.html").is_file()
    assert str((out_dir / "index.html").resolve()) in out
    rc, _, err = run(
        capsys, "demo", "-o", out_dir, "--image", files / "img.png", "--model", files / "tiny.npz"
    )
    assert_one_line_error(rc, err, "--force")
    rc, _, err = run(
        capsys,
        "demo",
        "-o",
        out_dir,
        "--image",
        files / "img.png",
        "--model",
        files / "tiny.npz",
        "--force",
    )
    assert rc == 0, err


def test_never_overwrites_without_force(files, tmp_path, capsys):
    out_png = tmp_path / "p.png"
    out_png.write_bytes(b"keep me")
    args = ["project", files / "tiny.npz", files / "img.png", "--layer", "conv1", "-o", out_png]
    rc, _, err = run(capsys, *args)
    assert_one_line_error(rc, err, "--force", "p.png")
    assert out_png.read_bytes() == b"keep me"
    assert err.count("\n") == 1  # refused before any work: no progress lines
    rc, _, err = run(capsys, *args, "--force")
    assert rc == 0, err
    assert Image.open(out_png).mode == "RGB"
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize(
    "case",
    [
        ("missing model", ["info", "{d}/absent.npz"], ["absent.npz"]),
        ("corrupt model", ["info", "{d}/img.png"], []),
        (
            "missing image",
            ["project", "{d}/tiny.npz", "{d}/nope.jpg", "--layer", "conv1", "-o", "{o}"],
            ["nope.jpg"],
        ),
        (
            "bad layer",
            ["project", "{d}/tiny.npz", "{d}/img.png", "--layer", "conv9", "-o", "{o}"],
            ["conv9"],
        ),
        (
            "bad channel",
            [
                "project",
                "{d}/tiny.npz",
                "{d}/img.png",
                "--layer",
                "conv1",
                "--channel",
                "99",
                "-o",
                "{o}",
            ],
            ["99"],
        ),
        (
            "bad position",
            [
                "project",
                "{d}/tiny.npz",
                "{d}/img.png",
                "--layer",
                "conv1",
                "--at",
                "50,0",
                "-o",
                "{o}",
            ],
            [],
        ),
        (
            "no output folder",
            [
                "switches",
                "{d}/tiny.npz",
                "{d}/img.png",
                "--layer",
                "pool1",
                "-o",
                "{d}/no/such/dir/s.npy",
            ],
            ["does not exist"],
        ),
        ("convert to non-npz", ["convert", "{d}/model.onnx", "{o}"], [".npz"]),
    ],
    ids=lambda c: c[0],
)
def test_errors_are_one_line(files, tmp_path, capsys, case):
    _, argv, words = case
    out = tmp_path / "out.png"
    argv = [a.format(d=files, o=out) for a in argv]
    rc, _, err = run(capsys, *argv)
    assert_one_line_error(rc, err, *words)
    assert not out.exists() and no_temp_files(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["project", "m.npz", "i.png", "--layer", "c", "--at", "1;2", "-o", "x.png"],
        ["info"],
        ["frobnicate"],
        ["info", "m.npz", "--threads", "0"],
        [
            "project",
            "m.npz",
            "i.png",
            "--layer",
            "c",
            "--top",
            "2",
            "--channel",
            "1",
            "-o",
            "x.png",
        ],
    ],
)
def test_usage_errors_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert_one_line_error(exc.value.code, capsys.readouterr().err)


def test_python_dash_m(files):
    # The folder holding the pydeconv under test (the source tree or site-packages), not the cwd.
    here = str(Path(pydeconv.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    help_run = subprocess.run(
        [sys.executable, "-m", "pydeconv", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=files,
        timeout=60,
    )
    assert help_run.returncode == 0
    for command in ("info", "convert", "project", "switches", "demo"):
        assert command in help_run.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "pydeconv", "info", "absent.npz"],
        capture_output=True,
        text=True,
        env=env,
        cwd=files,
        timeout=60,
    )
    assert_one_line_error(bad.returncode, bad.stderr, "absent.npz")


# --- convert: an ONNX file written byte by byte (no onnx dependency) -----------------------------


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field, n):
    return _varint(field << 3) + _varint(n)


def _msg(field, payload):
    payload = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _tensor(name, array):
    a = np.ascontiguousarray(array, dtype="<f4")
    return b"".join(_int(1, d) for d in a.shape) + _int(2, 1) + _msg(8, name) + _msg(9, a.tobytes())


def _ints_attr(name, values):
    return _msg(1, name) + b"".join(_int(8, v) for v in values) + _int(20, 7)


def _value_info(name, dims):
    shape = b"".join(_msg(1, _int(1, d)) for d in dims)
    return _msg(1, name) + _msg(2, _msg(1, _int(1, 1) + _msg(2, shape)))


def write_onnx(path, weight, bias):
    """input (1,3,9,9) -> Conv 3x3 pad 1 -> Relu -> MaxPool 2x2 -> output."""
    nodes = [
        _msg(1, "x")
        + _msg(1, "w")
        + _msg(1, "b")
        + _msg(2, "c")
        + _msg(3, "conv")
        + _msg(4, "Conv")
        + _msg(5, _ints_attr("kernel_shape", [3, 3]))
        + _msg(5, _ints_attr("pads", [1, 1, 1, 1])),
        _msg(1, "c") + _msg(2, "r") + _msg(3, "relu") + _msg(4, "Relu"),
        _msg(1, "r")
        + _msg(2, "y")
        + _msg(3, "pool")
        + _msg(4, "MaxPool")
        + _msg(5, _ints_attr("kernel_shape", [2, 2]))
        + _msg(5, _ints_attr("strides", [2, 2])),
    ]
    graph = (
        b"".join(_msg(1, n) for n in nodes)
        + _msg(2, "tiny")
        + _msg(5, _tensor("w", weight))
        + _msg(5, _tensor("b", bias))
        + _msg(11, _value_info("x", [1, 3, 9, 9]))
        + _msg(12, _value_info("y", [1, 4, 4, 4]))
    )
    model = _int(1, 8) + _msg(2, "test") + _msg(7, graph) + _msg(8, _int(2, 13))
    Path(path).write_bytes(model)


def test_convert(tmp_path, capsys):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    src, dst = tmp_path / "m.onnx", tmp_path / "m.npz"
    write_onnx(src, weight, bias)
    (tmp_path / "labels.txt").write_text("zero\none\n\ntwo\nthree\n")
    rc, _, err = run(
        capsys,
        "convert",
        src,
        dst,
        "--mean",
        0.5,
        "--std",
        0.25,
        "--scale",
        0.5,
        "--channel-order",
        "BGR",
        "--labels",
        tmp_path / "labels.txt",
    )
    assert rc == 0, err
    net = pydeconv.load(str(dst))
    assert net.preprocess["channel_order"] == "BGR"
    assert net.preprocess["scale"] == pytest.approx(0.5)
    assert np.allclose(net.preprocess["mean"], 0.5) and np.allclose(net.preprocess["std"], 0.25)
    assert net.labels == ["zero", "one", "two", "three"]
    kinds = [row["kind"] for row in net.info()]
    assert kinds == ["conv2d", "relu", "max_pool2d"]
    stored = [v for v in net.params.values() if v.shape == weight.shape]
    np.testing.assert_array_equal(stored[0], weight)
    assert no_temp_files(tmp_path)

    rc, _, err = run(capsys, "convert", src, dst)
    assert_one_line_error(rc, err, "--force")
    rc, _, err = run(capsys, "convert", src, dst, "--force")
    assert rc == 0, err
    assert pydeconv.load(str(dst)).preprocess["channel_order"] == "RGB"


# --- issue 13: the command line as the README shows it -------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pydeconv {pydeconv.__version__}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_before_or_after_the_command(files, capsys, monkeypatch, where):
    seen = []
    monkeypatch.setattr(pydeconv, "set_num_threads", seen.append)
    argv = (
        ["--threads", "2", "info", files / "tiny.npz"]
        if where == "before"
        else ["info", files / "tiny.npz", "--threads", "2"]
    )
    rc, out, err = run(capsys, *argv)
    assert rc == 0, err
    assert seen == [2] and "conv1" in out


def test_threads_not_a_number_names_the_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info", "m.npz", "--threads", "abc"])
    err = capsys.readouterr().err
    assert_one_line_error(exc.value.code, err, "--threads", "'abc'")
    assert "_threads" not in err


def test_info_into_a_closed_pipe_ends_quietly(files):
    """`pydeconv info MODEL | head -1`: the reader leaves early; no 'Broken pipe', exit 0."""
    here = str(Path(pydeconv.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # Enough layers that the table outgrows the pipe's buffer: a long chain of ReLUs.
    graph, params = models.zfnet_like(seed=0, size=37)
    last = graph["layers"][-1]["name"]
    for i in range(3000):
        graph["layers"].append(
            {"name": f"extra_relu_{i}_" + "x" * 40, "kind": "relu", "inputs": [last]}
        )
        last = graph["layers"][-1]["name"]
    graph.pop("outputs", None)
    pydeconv.build(graph, params).save(str(files / "long.npz"))
    cmd = (
        f"'{sys.executable}' -m pydeconv info '{files / 'long.npz'}' | head -1; "
        f'echo "status ${{PIPESTATUS[0]}}"'
    )
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.startswith("model ") and "status 0" in done.stdout, done
    assert done.stderr == "", done.stderr


def test_project_writes_the_format_its_name_says(files, tmp_path, capsys):
    base = ["project", files / "tiny.npz", files / "img.png", "--layer", "conv2", "--top", "2"]
    for name, fmt in (("out.jpg", "JPEG"), ("out.JPEG", "JPEG"), ("out.png", "PNG")):
        rc, _, err = run(capsys, *base, "-o", tmp_path / name)
        assert rc == 0, err
        with Image.open(tmp_path / name) as img:
            assert img.format == fmt
    rc, _, err = run(capsys, *base, "-o", tmp_path / "out.gif")
    assert_one_line_error(rc, err, "out.gif", ".png")
    assert err.count("\n") == 1 and not (tmp_path / "out.gif").exists()  # refused before any work


def test_switches_only_as_npy(files, tmp_path, capsys):
    rc, _, err = run(
        capsys,
        "switches",
        files / "tiny.npz",
        files / "img.png",
        "--layer",
        "pool1",
        "-o",
        tmp_path / "s.png",
    )
    assert_one_line_error(rc, err, "s.png", ".npy")
    assert not (tmp_path / "s.png").exists()


def test_demo_saves_its_model(files, tmp_path, capsys):
    """`pydeconv demo --save-model FILE`: the README's other examples run on that file."""
    saved = tmp_path / "model.npz"
    argv = [
        "demo",
        "-o",
        tmp_path / "demo",
        "--image",
        files / "img.png",
        "--model",
        files / "tiny.npz",
        "--save-model",
        saved,
    ]
    rc, _, err = run(capsys, *argv)
    assert rc == 0, err
    assert pydeconv.load(saved).layers == pydeconv.load(files / "tiny.npz").layers
    rc, _, err = run(capsys, *argv[:2], tmp_path / "demo2", *argv[3:])
    assert_one_line_error(rc, err, "model.npz", "--force")  # refused before any work
    assert not (tmp_path / "demo2").exists()
    rc, _, err = run(capsys, *argv[:2], tmp_path / "demo3", *argv[3:-1], tmp_path / "m.onnx")
    assert_one_line_error(rc, err, "m.onnx", ".npz")
