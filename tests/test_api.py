"""The public Python API: load/convert, Net's description (layers, info, params), forward's options
(upto, several outputs, keep), batched projections and sharing one Net between threads."""

from __future__ import annotations

import threading

import models
import npref
import numpy as np
import onnx_numpy
import pytest
from onnx_writer import OnnxBuilder

import pydeconv


def _onnx_model(path):
    """Conv (11x11 -> 6x6) -> Relu -> MaxPool 3x3/2 (overlapping, -> 2x2) -> Flatten -> Gemm."""
    rng = np.random.default_rng(11)
    b = OnnxBuilder()
    x = b.input("image", [1, 3, 11, 11])
    t = b.node(
        "Conv",
        [
            x,
            b.init("w1", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
            b.init("b1", rng.standard_normal(4).astype(np.float32)),
        ],
        name="conv",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
        strides=[2, 2],
    )
    t = b.node("Relu", [t], name="relu")
    t = b.node("MaxPool", [t], name="pool", kernel_shape=[3, 3], strides=[2, 2])
    t = b.node("Flatten", [t], name="flat")
    w2 = b.init("w2", (rng.standard_normal((5, 16)) / 4).astype(np.float32))
    b.output(
        b.node(
            "Gemm",
            [t, w2, b.init("b2", np.zeros(5, np.float32))],
            name="fc",
            outputs=["logits"],
            transB=1,
        )
    )
    b.save(str(path))
    return b


def test_load_npz_and_onnx_and_convert(tmp_path):
    builder = _onnx_model(tmp_path / "m.onnx")
    x = models.random_input((2, 3, 11, 11), 1)
    want = onnx_numpy.run(builder, x)["logits"]
    from_onnx = pydeconv.load(tmp_path / "m.onnx", labels=list("abcde"))
    assert from_onnx.path == str(tmp_path / "m.onnx")
    assert from_onnx.input_shape == (3, 11, 11) and from_onnx.labels == list("abcde")
    out, _ = from_onnx.forward(x)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)

    converted = pydeconv.convert(
        tmp_path / "m.onnx", tmp_path / "m.npz", labels=list("abcde"), compress=True
    )
    from_npz = pydeconv.load(tmp_path / "m.npz")
    assert from_npz.graph == converted.graph == from_onnx.graph
    assert from_npz.labels == list("abcde")
    for key, value in from_onnx.params.items():
        np.testing.assert_array_equal(from_npz.params[key], value, err_msg=key)
    np.testing.assert_array_equal(from_npz.forward(x)[0], out)


def _chain():
    """conv 7x7/2 pad 1 -> relu -> max pool 3x3/2 -> conv 5x5/2 pad 2 -> flatten -> linear."""
    rng = np.random.default_rng(0)
    params = {
        "conv1/weight": rng.standard_normal((4, 3, 7, 7)).astype(np.float32),
        "conv1/bias": np.zeros(4, np.float32),
        "conv2/weight": rng.standard_normal((6, 4, 5, 5)).astype(np.float32),
        "fc/weight": rng.standard_normal((2, 6 * 4 * 4)).astype(np.float32),
    }
    layers = [
        {
            "name": "conv1",
            "kind": "conv2d",
            "inputs": ["data"],
            "attrs": {"stride": [2, 2], "padding": [1, 1]},
            "params": {"weight": [4, 3, 7, 7], "bias": [4]},
        },
        {"name": "relu1", "kind": "relu", "inputs": ["conv1"]},
        {
            "name": "pool1",
            "kind": "max_pool2d",
            "inputs": ["relu1"],
            "attrs": {"kernel_size": [3, 3], "stride": 2},
        },
        {
            "name": "conv2",
            "kind": "conv2d",
            "inputs": ["pool1"],
            "attrs": {"stride": [2, 2], "padding": [2, 2, 2, 2]},
            "params": {"weight": [6, 4, 5, 5]},
        },
        {"name": "flatten", "kind": "flatten", "inputs": ["conv2"]},
        {"name": "fc", "kind": "linear", "inputs": ["flatten"], "params": {"weight": [2, 96]}},
    ]
    graph = {
        "format": "pydeconv",
        "version": 1,
        "name": "chain",
        "input": {"name": "data", "shape": [3, 35, 35]},
        "layers": layers,
    }
    return graph, params


def test_info_shapes_and_receptive_fields():
    net = pydeconv.build(*_chain())
    assert net.layers == ["conv1", "relu1", "pool1", "conv2", "flatten", "fc"]
    assert net.outputs == ["fc"] and net.input_name == "data"
    info = {d["name"]: d for d in net.info()}
    assert [d["name"] for d in net.info()] == net.layers
    # Shapes: (35 + 2 - 7) // 2 + 1 = 16; (16 - 3) // 2 + 1 = 7; (7 + 4 - 5) // 2 + 1 = 4.
    assert tuple(info["conv1"]["shape"]) == (4, 16, 16)
    assert tuple(info["pool1"]["shape"]) == (4, 7, 7)
    assert tuple(info["conv2"]["shape"]) == (6, 4, 4)
    assert tuple(info["fc"]["shape"]) == (2,)
    # Receptive fields by hand: size grows by (k - 1) * the stride so far, stride multiplies, the
    # first window starts at -padding * the stride so far.
    #   conv1: size 7, stride 2, start -1
    #   pool1: size 7 + (3 - 1) * 2 = 11, stride 4, start -1
    #   conv2: size 11 + (5 - 1) * 4 = 27, stride 8, start -1 - 2 * 4 = -9
    expected = {
        "conv1": (7, 2, -1),
        "relu1": (7, 2, -1),
        "pool1": (11, 4, -1),
        "conv2": (27, 8, -9),
    }
    for name, (size, stride, start) in expected.items():
        d = info[name]
        assert tuple(d["rf_size"]) == (size, size), name
        assert tuple(d["rf_stride"]) == (stride, stride), name
        assert tuple(d["rf_start"]) == (start, start), name
    assert [info[n]["params"] for n in net.layers] == [4 * 3 * 49 + 4, 0, 0, 6 * 4 * 25, 0, 2 * 96]
    assert net.layer_info("pool1")["kind"] == "max_pool2d" and net.layer_info("conv2")[
        "inputs"
    ] == ["pool1"]
    info["conv1"]["shape"] = None  # info() hands out copies
    assert net.info()[0]["shape"] is not None


def test_params_are_read_only_copies_of_what_was_given():
    graph, params = _chain()
    given = {k: v.copy() for k, v in params.items()}
    net = pydeconv.build(graph, params)
    assert sorted(net.params) == sorted(params)
    for key, value in net.params.items():
        assert value.dtype == np.float32 and not value.flags.writeable
        np.testing.assert_array_equal(value, given[key])
        with pytest.raises(ValueError):
            value[...] = 0
    # The engine keeps its own copy: changing the caller's arrays afterwards changes nothing.
    x = models.random_input((1, 3, 35, 35), 2)
    before, _ = net.forward(x)
    for value in params.values():
        value[...] = 0
    np.testing.assert_array_equal(net.forward(x)[0], before)
    np.testing.assert_array_equal(net.params["conv1/weight"], given["conv1/weight"])


def test_net_keeps_its_own_graph(tmp_path):
    """Editing the dict given to build() afterwards must not change what the Net reports or saves:
    the saved file would otherwise describe a different model than the one in the engine."""
    graph, params = _chain()
    net = pydeconv.build(graph, params)
    x = models.random_input((1, 3, 35, 35), 3)
    out, _ = net.forward(x)
    graph["layers"][0]["attrs"]["padding"] = [0, 0]
    graph["layers"][2]["attrs"]["stride"] = [1, 1]
    assert net.graph["layers"][0]["attrs"]["padding"] == [1, 1]
    net.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(pydeconv.load(tmp_path / "m.npz").forward(x)[0], out)


def test_forward_upto_runs_only_what_is_needed():
    graph, params = models.small_dag()
    net = pydeconv.build(graph, params)
    x = models.random_input((2, 3, 12, 10), 4)
    full_out, full = net.forward(x)
    assert full.layers == net.layers == [layer["name"] for layer in graph["layers"]]
    assert full.batch == 2
    for upto, needed in (
        ("conv_b", ["conv1", "relu1", "conv_b"]),
        ("relu_a", ["conv1", "relu1", "conv_a", "relu_a"]),
        ("add1", ["conv1", "relu1", "conv_a", "relu_a", "conv_b", "bn_b", "add1"]),
    ):
        out, trace = net.forward(x, upto=upto)
        assert trace.layers == needed
        np.testing.assert_array_equal(out, full.activation(upto))
        skipped = [n for n in net.layers if n not in needed]
        for name in skipped:
            with pytest.raises(pydeconv.PydeconvError):
                trace.activation(name)
    np.testing.assert_array_equal(full_out, full.activation("fc"))


def test_several_outputs_return_a_dict():
    graph, params = models.small_dag()
    graph["outputs"] = ["relu_a", "cat1", "fc"]
    net = pydeconv.build(graph, params)
    x = models.random_input((2, 3, 12, 10), 5)
    out, trace = net.forward(x)
    assert isinstance(out, dict) and list(out) == ["relu_a", "cat1", "fc"]
    acts, _ = npref.forward(graph, params, x)
    for name, value in out.items():
        np.testing.assert_array_equal(value, trace.activation(name))
        npref.assert_close(value, acts[name], err_msg=name)
        assert not value.flags.writeable


@pytest.mark.parametrize("rule", npref.RULES)
def test_keep_minimal_drops_activations_but_projects_the_same(rule):
    graph, params = models.zfnet_like()
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + net.input_shape, 6)
    out_all, full = net.forward(x)
    out_min, minimal = net.forward(x, keep="minimal")
    np.testing.assert_array_equal(out_min, out_all)
    assert minimal.layers == full.layers

    def kept(trace):
        names = []
        for name in net.layers:
            try:
                trace.activation(name)
                names.append(name)
            except pydeconv.PydeconvError:
                pass
        return names

    assert kept(full) == net.layers
    assert len(kept(minimal)) < len(net.layers) // 2
    for pool in ("pool1", "pool2", "pool3"):
        np.testing.assert_array_equal(minimal.switches(pool), full.switches(pool))
    # A start signal taken from the full trace ("max" of channel 1) projects identically from both.
    for layer in ("pool1", "conv2", "relu3", "pool3", "fc6", "prob"):
        act = full.activation(layer)
        start = npref.start_signal(act.astype(np.float64), 1, "max").astype(np.float32)
        want = net.project(full, layer, channel=1, at="max", rule=rule)
        np.testing.assert_array_equal(
            net.project(full, layer, at=start, rule=rule), want, err_msg=layer
        )
        np.testing.assert_array_equal(
            net.project(minimal, layer, at=start, rule=rule), want, err_msg=layer
        )


def test_batched_projection_two_samples_three_channels():
    graph, params = models.zfnet_like()
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + net.input_shape, 7)
    _, trace = net.forward(x)
    channels = [7, 0, 3]
    for layer, at in (("conv2", "max"), ("pool2", (1, 2)), ("relu4", "map"), ("fc6", "max")):
        many = net.project(trace, layer, channel=channels, at=at, rule="deconvnet")
        assert many.shape == (2, 3) + net.input_shape and many.dtype == np.float32
        for n in range(2):
            _, alone = net.forward(x[n : n + 1])
            for k, ch in enumerate(channels):
                one = net.project(alone, layer, channel=ch, at=at, rule="deconvnet")
                assert one.shape == (1,) + net.input_shape
                npref.assert_close(
                    many[n, k], one[0], rtol=1e-5, atol_scale=1e-6, err_msg=f"{layer} n={n} ch={ch}"
                )
    assert not np.array_equal(many[:, 0], many[:, 1])


def test_project_returns_the_positions_it_chose():
    """return_positions: where each projection started, as the engine chose it (at="max": the
    first strongest activation in row-major order), so callers never re-derive it."""
    graph, params = models.zfnet_like()
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + net.input_shape, 8)
    _, trace = net.forward(x)
    act = trace.activation("conv2")
    proj, pos = net.project(trace, "conv2", channel=[3, 5], at="max", return_positions=True)
    assert pos.shape == (2, 2, 2) and pos.dtype == np.int64
    np.testing.assert_array_equal(proj, net.project(trace, "conv2", channel=[3, 5], at="max"))
    for n in range(2):
        for k, ch in enumerate([3, 5]):
            y, xx = np.unravel_index(int(np.argmax(act[n, ch])), act.shape[2:])
            assert tuple(pos[n, k]) == (y, xx)
            # The projection starts from that one activation.
            start = np.zeros((1,) + act.shape[1:], np.float32)
            start[0, ch, y, xx] = act[n, ch, y, xx]
            _, alone = net.forward(x[n : n + 1])
            npref.assert_close(
                proj[n, k], net.project(alone, "conv2", at=start)[0], rtol=1e-5, atol_scale=1e-6
            )
    _, one = net.project(trace, "conv2", channel=4, at=(1, 2), return_positions=True)
    assert one.shape == (2, 2) and one.tolist() == [[1, 2], [1, 2]]
    _, whole = net.project(trace, "conv2", channel=4, at="map", return_positions=True)
    assert whole.tolist() == [[-1, -1], [-1, -1]]
    _, flat = net.project(trace, "fc6", channel=[0, 1], return_positions=True)
    assert flat.tolist() == [[[0, 0], [0, 0]], [[0, 0], [0, 0]]]
    with pytest.raises(pydeconv.PydeconvError, match="return_positions"):
        net.project(
            trace, "conv2", at=np.zeros((2,) + act.shape[1:], np.float32), return_positions=True
        )


def test_values_beyond_int64_are_channel_errors():
    graph, params = models.zfnet_like()
    net = pydeconv.build(graph, params)
    _, trace = net.forward(models.random_input((1,) + net.input_shape, 1))
    for kwargs, words in (
        ({"channel": 2**70}, "channel"),
        ({"channel": 0, "at": (2**70, 0)}, "position"),
        ({"channel": [0, -(2**64)]}, "channel"),
    ):
        with pytest.raises(pydeconv.ChannelError, match=words):
            net.project(trace, "conv2", **kwargs)


def _work(net, x, threads):
    """One forward and a projection of each rule; everything a user would do from a thread."""
    out, trace = net.forward(x, threads=threads)
    projections = [
        net.project(trace, "conv2", channel=[1, 4], at="max", rule=rule, threads=threads)
        for rule in npref.RULES
    ]
    projections.append(
        net.project(trace, "pool2", channel=2, at="map", rule="guided", threads=threads)
    )
    return [out, trace.switches("pool1")] + projections


@pytest.mark.parametrize("threads", [1, 2])
def test_one_net_shared_by_four_python_threads(threads):
    graph, params = models.zfnet_like()
    net = pydeconv.build(graph, params)
    inputs = [models.random_input((2,) + net.input_shape, 100 + i) for i in range(4)]
    serial = [_work(net, x, threads) for x in inputs]
    results = [[None] * 3 for _ in inputs]
    errors = []
    barrier = threading.Barrier(len(inputs))

    def run(i):
        try:
            barrier.wait()
            for rep in range(3):
                results[i][rep] = _work(net, inputs[i], threads)
        except BaseException as e:  # reported below; an exception in a thread would go unseen
            errors.append(e)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    for i, reps in enumerate(results):
        for rep in reps:
            for got, want in zip(rep, serial[i]):
                np.testing.assert_array_equal(got, want, err_msg=f"thread {i}")


def test_set_num_threads():
    before = pydeconv.get_num_threads()
    graph, params = models.small_dag()
    net = pydeconv.build(graph, params)
    x = models.random_input((2, 3, 12, 10), 8)
    try:
        for n in (1, 2, 3):
            pydeconv.set_num_threads(n)
            assert pydeconv.get_num_threads() == n
            out, trace = net.forward(x)
            # Same thread count, same summation order: bit-identical to passing it explicitly.
            ref_out, ref_trace = net.forward(x, threads=n)
            np.testing.assert_array_equal(out, ref_out)
            np.testing.assert_array_equal(
                net.project(trace, "cat1", channel=2, rule="guided"),
                net.project(ref_trace, "cat1", channel=2, rule="guided", threads=n),
            )
    finally:
        pydeconv.set_num_threads(before)
    assert pydeconv.get_num_threads() == before
