"""Replays the fuzzing regression corpus (tests/fuzz/corpus/regressions/, issue 13 section 5).

Every file goes through pydeconv.load (or pydeconv.image.load), forward and one projection in a
worker process capped at 2 GiB of address space (several files declare sizes that would take
hundreds of GiB if nothing refused them), and its outcome must be "accepted" or "rejected with a
pydeconv.errors exception".

The files that escape today are marked xfail(strict=True) with the issue-13 section of their fix.
That is deliberate: the suite stays green while those escapes exist, and turns RED the moment a fix
makes one of them pass (an XPASS under strict=True is a failure) until its mark is removed here,
so a fix cannot land without the test that proves it. The corpus README says what each file is.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "fuzz", "corpus", "regressions")
sys.path.insert(0, os.path.join(HERE, "fuzz"))

import run_mutants  # noqa: E402

# file name -> what escapes today (the xfail reason). Everything else must pass. The .npz files
# that escaped Python's own reader (AttributeError, NotImplementedError, RecursionError,
# TokenError, TypeError, zlib.error, MemoryError) are rejected since Python reads models through
# the C++ reader (issue 12), as is onnx-escaped-TypeError-9 (a dimension past int64, now refused
# when the graph is built).
FAILING_TODAY: dict[str, str] = {}

# A Darknet finding is a .cfg and the .weights of the same stem: the .cfg is replayed (pydeconv.load
# finds the weights beside it).
FILES = sorted(f for f in os.listdir(CORPUS) if f != "README.md" and not f.endswith(".weights"))


@pytest.fixture(scope="module")
def outcomes():
    jobs = [("file", os.path.join(CORPUS, f)) for f in FILES]
    return {
        os.path.basename(job[1]): result for job, result in run_mutants.run(jobs, 1, 60.0, 2048)
    }


def test_every_file_is_documented():
    readme = open(os.path.join(CORPUS, "README.md"), encoding="utf-8").read()
    for name in FILES:
        stem = name.rsplit("-", 1)[0]  # numbered families share one README line
        assert name in readme or stem in readme, f"{name} has no line in the corpus README"
    assert set(FAILING_TODAY) <= set(FILES), sorted(set(FAILING_TODAY) - set(FILES))


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=FAILING_TODAY[f]))
        if f in FAILING_TODAY
        else f
        for f in FILES
    ],
)
def test_replay(outcomes, name):
    result = outcomes[name]
    assert result["outcome"] in ("accepted", "rejected"), (
        f"{name}: {result['outcome']}: {result.get('type')}: {result.get('msg')}"
    )


# The Python and C++ readers give the same answer on every model file of the corpus (issue 13
# section 5): Python reads .npz files through the C++ reader, and a C++ application
# (tests/cpp/tools/modelcheck, found through PYDECONV_CPP_TOOLS as .ci/run sets it) must agree.
_TOOLS = os.environ.get("PYDECONV_CPP_TOOLS", "")
_KINDS = {
    "format": "ModelFormatError",
    "graph": "GraphError",
    "shape": "ShapeError",
    "not_found": "LayerNotFoundError",
    "range": "ChannelError",
    "value": "PydeconvError",
}


@pytest.mark.skipif(
    not _TOOLS, reason="PYDECONV_CPP_TOOLS (the C++ tools' build folder) is not set"
)
@pytest.mark.parametrize("name", [f for f in FILES if f.endswith(".npz")])
def test_python_and_cpp_readers_agree(name):
    import pydeconv

    path = os.path.join(CORPUS, name)
    out = subprocess.run([os.path.join(_TOOLS, "modelcheck"), path], capture_output=True, text=True)
    cpp = out.stdout.splitlines()[0]
    try:
        pydeconv.load(path)
        py = "ok"
    except pydeconv.PydeconvError as e:
        py = type(e).__name__
    assert py == ("ok" if cpp == "ok" else _KINDS[cpp.split("\t")[1]]), (py, out.stdout)


# -- issue 14: output sizes a layer declares through its attributes --------------------------------
def _one_layer(shape, kind, attrs, params=None):
    import numpy as np

    layer = {"name": "u", "kind": kind, "inputs": ["input"], "attrs": attrs}
    arrays = {}
    if params:
        layer["params"] = {k: list(v) for k, v in params.items()}
        arrays = {f"u/{k}": np.zeros(v, np.float32) for k, v in params.items()}
    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "input", "shape": shape},
        "layers": [layer],
        "outputs": ["u"],
    }
    return graph, arrays


@pytest.mark.parametrize(
    "shape, kind, attrs, params",
    [
        ([1, 8192, 8192], "upsample", {"scale": [10**9, 10**9]}, None),  # 6.7e25 values
        ([1024, 1024, 64], "upsample", {"scale": [10**9]}, None),
        ([3, 4, 4], "upsample", {"scale": [65536, 65536], "bilinear": 1}, None),
        ([1, 8192, 8192], "conv_transpose2d", {"stride": [10**9, 10**9]}, {"weight": (1, 1, 3, 3)}),
        ([2, 64, 64], "conv_transpose2d", {"dilation": [10**9, 10**9]}, {"weight": (2, 1, 3, 3)}),
        ([2, 8, 8], "pad", {"padding": [10**9]}, None),
    ],
)
def test_huge_declared_outputs_are_refused_naming_the_layer(shape, kind, attrs, params):
    """A huge upsample scale, conv_transpose2d stride or dilation, or padding is refused from the
    declared sizes (the shape check, before any activation is allocated) with a ShapeError naming
    the layer and its kind; the sizes' product, past int64, is never formed (UBSan)."""
    import pydeconv

    with pytest.raises(pydeconv.ShapeError, match=rf"layer 'u' \({kind}\): output shape"):
        pydeconv.build(*_one_layer(shape, kind, attrs, params))


@pytest.mark.parametrize("kind", ["max_pool2d", "avg_pool2d"])
def test_pool_windows_far_larger_than_the_input(kind):
    """darknet-hang-timeout-1: a 4097-wide window (padding 2048) over an 8 x 8 map. The kernels
    visit only the taps inside the input (visiting all 16.8 million per output took seconds), and
    give the whole map's max / mean at every output."""
    import time

    import numpy as np

    import pydeconv

    attrs = {"kernel_size": [4097, 4097], "stride": [1, 1], "padding": [2048] * 4}
    if kind == "avg_pool2d":
        attrs["count_include_pad"] = False
    net = pydeconv.build(*_one_layer([2, 8, 8], kind, attrs))
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    t0 = time.perf_counter()
    y, trace = net.forward(x, keep=["u"])
    net.project(trace, "u", 1, at="max", rule="deconvnet")
    assert time.perf_counter() - t0 < 2.0
    want = x.max(axis=(2, 3)) if kind == "max_pool2d" else x.mean(axis=(2, 3))
    assert y.shape == (1, 2, 8, 8)
    np.testing.assert_allclose(y, np.broadcast_to(want[:, :, None, None], y.shape), rtol=1e-5)
