"""A batch gives the bits of its samples run one at a time (issue 15): every layer's output of a
batch-8 forward equals the eight batch-1 forwards exactly, keep='all' and 'minimal', with the
direct GEMM and with Winograd (the cost model's choice, which is made per sample, and each tile
size forced). The first block's maps are large enough (>= 2 MiB per sample) for the executor to run
it a few samples at a time (chunks), with a residual add, a batch norm over its conv, an LRN and
in-place layers inside the chunked run; the later layers run on the whole batch at once."""

import models
import npref
import numpy as np
import pytest

import pydeconv

SIZE = 96  # 64 channels x 96 x 96 floats: 2.25 MiB per sample, over the executor's chunk floor


def big_maps_net():
    b = models._Builder("batch-net", (3, SIZE, SIZE), 3)
    b.conv("conv1", "input", 16, 3, padding=1)
    b.add("relu1", "relu", "conv1")
    b.conv("conv2", "relu1", 64, 3, padding=1)
    b.batch_norm("bn2", "conv2")
    b.add("relu2", "relu", "bn2")
    b.conv("conv3", "relu2", 64, 3, padding=1)
    b.add("res3", "add", ["conv3", "relu2"])
    b.add("relu3", "relu", "res3")
    b.add("norm3", "lrn", "relu3", models.LRN_ATTRS)
    b.add("pool3", "max_pool2d", "norm3", {"kernel_size": [2, 2], "stride": [2, 2]})
    b.conv("conv4", "pool3", 48, 3, padding=1)
    b.add("relu4", "relu", "conv4")
    b.conv("conv5", "relu4", 32, 3, padding=[1, 0, 2, 1])
    b.add("relu5", "relu", "conv5")
    b.add("pool5", "max_pool2d", "relu5", {"kernel_size": [3, 3], "stride": [2, 2]})
    return b.done()


@pytest.fixture(scope="module")
def setup():
    graph, params = big_maps_net()
    net = pydeconv.build(graph, params)
    x = models.random_input((8, 3, SIZE, SIZE), 5)
    return graph, params, net, x


@pytest.fixture(params=[False, True, 2, 4], ids=["gemm", "winograd-auto", "F2", "F4"])
def wmode(request):
    before = pydeconv.get_winograd()
    pydeconv.set_winograd(request.param)
    yield request.param
    pydeconv.set_winograd(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_of_eight_is_eight_batches_of_one_keep_all(setup, wmode, threads):
    _, _, net, x = setup
    out, trace = net.forward(x, threads=threads)
    for n in range(len(x)):
        one, alone = net.forward(x[n : n + 1], threads=threads)
        np.testing.assert_array_equal(out[n : n + 1], one, err_msg=f"sample {n}")
        for layer in net.layers:
            np.testing.assert_array_equal(
                trace.activation(layer)[n : n + 1],
                alone.activation(layer),
                err_msg=f"{layer} sample {n}",
            )


def test_batch_of_eight_is_eight_batches_of_one_keep_minimal(setup, wmode):
    _, _, net, x = setup
    kept = ["relu2", "res3", "pool3", "relu4"]
    for keep in ("minimal", kept):
        out, trace = net.forward(x, keep=keep, threads=2)
        for n in range(len(x)):
            one, alone = net.forward(x[n : n + 1], keep=keep, threads=2)
            np.testing.assert_array_equal(out[n : n + 1], one, err_msg=f"sample {n} keep={keep}")
            if keep != "minimal":
                for layer in kept:
                    np.testing.assert_array_equal(
                        trace.activation(layer)[n : n + 1], alone.activation(layer), err_msg=layer
                    )


def test_chunked_batch_matches_the_reference(setup):
    """The chunked run against the NumPy reference (two samples, so the check stays quick), and
    the projections from a chunked batch's trace (minimal: the switches and ReLU masks the chunks
    wrote) against those of each sample's own trace."""
    graph, params, net, x = setup
    out, trace = net.forward(x[:2], keep="all", threads=2)
    acts, _ = npref.forward(graph, params, x[:2])
    for layer in ("relu2", "res3", "norm3", "pool5"):
        npref.assert_close(trace.activation(layer), acts[layer], err_msg=layer)
    _, minimal = net.forward(x, keep=["relu3"], threads=2)
    got = net.project(minimal, "relu3", channel=[3, 40], at="max")
    for n in (0, 5):
        _, alone = net.forward(x[n : n + 1], keep=["relu3"], threads=2)
        want = net.project(alone, "relu3", channel=[3, 40], at="max")
        npref.assert_close(got[n : n + 1], want, err_msg=f"sample {n}")
