"""Relevance of a layer's units to a class: activation times gradient.

``relevance(net, trace, layer, cls)`` is, per image and unit of ``layer``, the unit's activation
times the gradient of class ``cls``'s score with respect to it (Zennit CRP's "relevance
maximisation" ranks units by it; it says which feature maps a class actually uses, where the
activation alone says only what fires). The gradient is one batched ``net.project(...,
rule="backprop", to=layer)`` from the score layer.

The score is the class's **logit**, not its probability: a softmax couples every class, so its
gradient mixes in the evidence against the others and vanishes where the net is sure. So
``score_layer`` defaults to the graph output, or to the input of that output when it is a
``softmax`` layer. A score layer with a spatial map (a fully convolutional head) scores a class by
the sum of its map. Pass ``score_layer`` to choose another layer (a net with several outputs
must).
"""

from __future__ import annotations

import numpy as np

from pydeconv.errors import ChannelError, GraphError, PydeconvError


def score_layer_of(net) -> str:
    """The layer whose output holds the class scores (logits): the graph output, or the input
    of a final softmax layer."""
    outs = net.outputs
    if len(outs) != 1:
        raise GraphError(
            f"the net has {len(outs)} outputs ({', '.join(outs)}): pass score_layer=LAYER"
        )
    info = net.layer_info(outs[0])
    if info["kind"] == "softmax":
        if len(info["inputs"]) != 1 or info["inputs"][0] == net.input_name:
            raise GraphError(f"softmax layer '{outs[0]}' has no single input layer to score by")
        return info["inputs"][0]
    return outs[0]


def relevance(net, trace, layer: str, cls: int, score_layer: str | None = None) -> np.ndarray:
    """Per image and unit of ``layer``: activation x d(score of class ``cls``)/d(activation),
    float32 of ``layer``'s output shape (N, C, H, W) (or (N, C) after a flatten/linear layer).

    ``trace`` must come from ``net.forward`` run to the score layer (the default forward, to
    the graph output) and hold ``layer``'s output (``keep="all"``, or ``keep=[layer]``).
    The score and its default are explained in the module's docstring."""
    score = score_layer_of(net) if score_layer is None else score_layer
    info = net.layer_info(score)  # LayerNotFoundError for an unknown name
    score = info["name"]
    if score not in trace.layers:
        raise PydeconvError(
            f"score layer '{score}' did not run in this trace: run net.forward without upto= "
            f"(or with upto='{score}')"
        )
    if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)):
        raise ChannelError(f"class {cls!r} is not an integer")
    classes = info["shape"][0]
    if not 0 <= int(cls) < classes:
        raise ChannelError(
            f"class {int(cls)} out of range: score layer '{score}' has {classes} classes"
        )
    act = trace.activation(layer)  # fails clearly when the trace did not keep it
    start = np.zeros((trace.batch,) + tuple(info["shape"]), np.float32)
    start[:, int(cls)] = 1.0
    grad = net.project(trace, score, at=start, rule="backprop", to=layer)
    return (act * grad).astype(np.float32, copy=False)
