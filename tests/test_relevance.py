"""pydeconv.analysis.relevance against torch autograd: activation x d(logit of class)/d(activation)
on the torch twins of tests/test_crosscheck.py (ZFNet-like ending in a softmax: the logit is
fc7; the DAG ending in a linear layer: its output)."""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest

import pydeconv
from pydeconv.analysis.relevance import relevance, score_layer_of
from pydeconv.errors import ChannelError, GraphError, LayerNotFoundError, PydeconvError

torch = pytest.importorskip("torch")
from test_crosscheck import MODELS, _t, torch_forward  # noqa: E402


def _setup(name, n=3):
    graph, params = MODELS[name]()
    net = pydeconv.build(graph, params)
    x = models.random_input((n,) + net.input_shape, 23)
    _, trace = net.forward(x)
    return graph, params, net, x, trace


@pytest.mark.parametrize(
    "model,layer,cls,score",
    [
        ("zfnet", "conv4", 3, None),
        ("zfnet", "relu3", 0, None),
        ("zfnet", "pool1", 9, None),
        ("zfnet", "fc6", 5, None),
        ("zfnet", "conv2", 2, "prob"),  # the probability, when asked for
        ("zfnet", "relu1", 7, "fc6"),
        ("dag", "relu1", 1, None),
        ("dag", "add1", 3, None),
        ("dag", "avg1", 0, "add2"),  # a spatial score: the sum of the class's map
    ],
)
def test_relevance_matches_torch(model, layer, cls, score):
    graph, params, net, x, trace = _setup(model)
    got = relevance(net, trace, layer, cls, score_layer=score)
    assert got.dtype == np.float32 and got.shape == trace.activation(layer).shape
    acts, _ = torch_forward(graph, params, _t(x).requires_grad_(True))
    name = score or {"zfnet": "fc7", "dag": "fc"}[model]
    target = acts[name][:, cls].sum()
    (grad,) = torch.autograd.grad(target, acts[layer])
    want = (acts[layer] * grad).detach().numpy()
    npref.assert_close(got, want, err_msg=f"{model} {layer} class {cls}")
    # per image: one image's relevance does not depend on the others in the batch
    _, one = net.forward(x[1:2])
    np.testing.assert_allclose(
        relevance(net, one, layer, cls, score_layer=score)[0], got[1], rtol=1e-5, atol=1e-6
    )


def test_score_layer_default():
    _, _, zf, _, _ = _setup("zfnet", 1)
    assert score_layer_of(zf) == "fc7"  # the input of the final softmax
    _, _, dag, _, _ = _setup("dag", 1)
    assert score_layer_of(dag) == "fc"


def test_minimal_trace_keeping_the_layer():
    _, _, net, x, trace = _setup("zfnet")
    _, small = net.forward(x, keep=["conv3"])
    np.testing.assert_array_equal(
        relevance(net, small, "conv3", 4), relevance(net, trace, "conv3", 4)
    )


def test_errors():
    _, _, net, x, trace = _setup("zfnet")
    with pytest.raises(ChannelError, match="class 10 out of range.*'fc7' has 10"):
        relevance(net, trace, "conv4", 10)
    with pytest.raises(ChannelError):
        relevance(net, trace, "conv4", -1)
    with pytest.raises(ChannelError):
        relevance(net, trace, "conv4", 1.5)
    with pytest.raises(LayerNotFoundError):
        relevance(net, trace, "conv4", 1, score_layer="nope")
    with pytest.raises(GraphError, match="'conv3'.*'fc6'"):
        relevance(net, trace, "fc6", 1, score_layer="conv3")  # fc6 runs after conv3
    _, upto = net.forward(x, upto="conv4")
    with pytest.raises(PydeconvError, match="did not run"):
        relevance(net, upto, "conv4", 1)
    _, minimal = net.forward(x, keep="minimal")
    with pytest.raises(PydeconvError):
        relevance(net, minimal, "conv3", 1)  # conv3's output not kept
