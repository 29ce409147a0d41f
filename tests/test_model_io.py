"""The model file (docs/FORMAT.md): save/load round trips and atomic writes.

A saved model must come back bit for bit: the same graph dict, every parameter identical, the same
forward output. Saving is atomic: whatever goes wrong, an existing file is left as it was and no
temporary file is left behind.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile

import models
import numpy as np
import pytest

import pydeconv
from pydeconv import model
from pydeconv.errors import ModelFormatError, ShapeError

MODELS = {"zfnet": models.zfnet_like, "dag": models.small_dag}


def _build(name):
    graph, params = MODELS[name]()
    return graph, params, pydeconv.build(graph, params)


def _input(net, seed=4):
    return models.random_input((2,) + net.input_shape, seed)


def _assert_same_net(a, b):
    assert a.graph == b.graph
    assert sorted(a.params) == sorted(b.params)
    for key, value in a.params.items():
        assert b.params[key].dtype == np.float32
        np.testing.assert_array_equal(b.params[key], value, err_msg=key)
    x = _input(a)
    out_a, trace_a = a.forward(x)
    out_b, trace_b = b.forward(x)
    np.testing.assert_array_equal(out_b, out_a)
    for layer in a.layers:
        np.testing.assert_array_equal(
            trace_b.activation(layer), trace_a.activation(layer), err_msg=layer
        )


@pytest.mark.parametrize("compress", [False, True], ids=["stored", "deflated"])
@pytest.mark.parametrize("name", MODELS)
def test_round_trip(tmp_path, name, compress):
    graph, params, net = _build(name)
    path = tmp_path / f"{name}.npz"
    net.save(path, compress=compress)
    loaded = pydeconv.load(path)
    assert loaded.graph == graph
    assert sorted(loaded.params) == sorted(params)
    for key, value in params.items():
        np.testing.assert_array_equal(loaded.params[key], value, err_msg=key)
    _assert_same_net(net, loaded)
    # Saving what was loaded gives the same model again (nothing drifts on a second trip).
    again = tmp_path / "again.npz"
    loaded.save(again, compress=compress)
    _assert_same_net(net, pydeconv.load(again))


@pytest.mark.parametrize("compress", [False, True], ids=["stored", "deflated"])
def test_file_layout_is_plain_numpy(tmp_path, compress):
    """The file is an ordinary .npz that NumPy reads without pickle: a uint8 JSON graph and one
    little-endian float32 array per parameter; savez stores, savez_compressed deflates."""
    graph, params, net = _build("zfnet")
    path = tmp_path / "m.npz"
    net.save(path, compress=compress)
    with zipfile.ZipFile(path) as zf:
        methods = {info.compress_type for info in zf.infolist()}
    assert methods == {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(["__graph__"] + list(params))
        blob = z["__graph__"]
        assert blob.dtype == np.uint8 and blob.ndim == 1
        assert json.loads(blob.tobytes().decode("utf-8")) == graph
        for key in params:
            assert z[key].dtype == np.dtype("<f4"), key
            assert z[key].flags.c_contiguous, key


def test_metadata_round_trip(tmp_path):
    """preprocess and labels given to load() are kept by save()."""
    graph, _, net = _build("dag")
    first = tmp_path / "a.npz"
    net.save(first)
    pre = {"mean": [0.5, 0.25, 0.125], "std": [2.0, 2.0, 2.0], "channel_order": "BGR"}
    labels = ["a", "b", "c", "d"]
    with_meta = pydeconv.load(first, preprocess=pre, labels=labels)
    second = tmp_path / "b.npz"
    with_meta.save(second)
    back = pydeconv.load(second)
    assert back.labels == labels
    assert back.graph["preprocess"] == pre
    assert back.preprocess["mean"] == pre["mean"] and back.preprocess["channel_order"] == "BGR"
    assert back.preprocess["size"] == graph["input"]["shape"][1:]


def test_save_overwrites_and_accepts_str_and_relative_paths(tmp_path, monkeypatch):
    _, _, zf = _build("zfnet")
    _, _, dag = _build("dag")
    path = tmp_path / "m.npz"
    zf.save(str(path))
    dag.save(path)  # over an existing file
    assert pydeconv.load(str(path)).graph == dag.graph
    monkeypatch.chdir(tmp_path)
    zf.save("relative.npz")
    assert pydeconv.load(tmp_path / "relative.npz").graph == zf.graph
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "relative.npz"]


def test_saved_file_has_the_usual_permissions(tmp_path):
    """The temporary file behind the atomic write is created private (0600); the saved model must
    end up with the mode any newly created file gets (0666 less the umask), readable by others."""
    umask = os.umask(0o022)
    try:
        _, _, net = _build("zfnet")
        path = tmp_path / "m.npz"
        net.save(path)
        assert oct(stat.S_IMODE(os.stat(path).st_mode)) == oct(0o644)
    finally:
        os.umask(umask)


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_invalid_params_leave_an_existing_file_untouched(tmp_path):
    graph, params, net = _build("zfnet")
    path = tmp_path / "m.npz"
    net.save(path)
    before = _snapshot(tmp_path)
    bad = dict(params, **{"conv1/weight": np.zeros((8, 3, 5, 5), np.float32)})
    with pytest.raises(ShapeError, match="conv1/weight"):
        model.write_npz(path, graph, bad)
    missing = {k: v for k, v in params.items() if k != "fc7/bias"}
    with pytest.raises(ModelFormatError, match="fc7/bias"):
        model.write_npz(path, graph, missing)
    assert _snapshot(tmp_path) == before
    _assert_same_net(net, pydeconv.load(path))


@pytest.mark.parametrize("compress", [False, True], ids=["stored", "deflated"])
def test_failure_while_writing_leaves_an_existing_file_untouched(tmp_path, monkeypatch, compress):
    """A write that dies half way (disk full, interrupted) must not leave a half-written model or a
    stray temporary file."""
    _, _, net = _build("zfnet")
    path = tmp_path / "m.npz"
    net.save(path)
    before = _snapshot(tmp_path)

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez_compressed" if compress else "savez", half_written)
    with pytest.raises(OSError, match="No space left"):
        net.save(path, compress=compress)
    assert _snapshot(tmp_path) == before


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    _, _, net = _build("dag")

    def interrupted(f, **arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        net.save(tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []
