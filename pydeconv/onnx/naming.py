"""Short, readable layer names for an imported graph: the one place that names imported layers.

ONNX node names are long and exporter-specific. A user asks for ``block5_conv3``, not
``functional_1_block5_conv3_1_BiasAdd``, so each layer is named after what the exporter says it
came from:

- tf2onnx (Keras): the Keras layer, the scope after the model's (``functional_1/block5_conv3_1/
  BiasAdd`` -> ``block5_conv3``). Keras 3 uniquifies every TF name scope with a ``_1``-style suffix
  (``functional_1``, ``block5_conv3_1``, ``dense_1_2`` for the layer ``dense_1``): when every scope
  of the graph carries one, one suffix is dropped.
- torch.onnx: the module path (``/layer4/layer4.1/conv2/Conv`` -> ``layer4.1.conv2``); an op of
  the top-level ``forward`` keeps its name (``/Flatten`` -> ``Flatten``).
- anything else: the node name as before (``/`` made ``_``).

Names are made unique in layer order: a layer whose short name is taken (the ReLU of a Keras conv
layer shares its scope) gets its kind appended (``block5_conv3_relu``), then ``_2``, ``_3``...
A renamed layer keeps its old, node-derived name as an alias (docs/FORMAT.md), so files, scripts and
caches that used it keep working. A layer made of several ONNX nodes (a Conv with the
BatchNormalization folded into it, a SiLU fused from Sigmoid and Mul, a constant Add folded into a
bias) also answers to each other node's name (``/`` made ``_``): the layer table lists them.
"""

from __future__ import annotations

import re

import numpy as np

_SUFFIX = re.compile(r"_\d+$")


def rename_layers(
    layers: list[dict],
    outputs: list[str],
    params: dict[str, np.ndarray],
    origin: dict[str, str],
    producer: str,
    node_names: list[str],
    input_name: str,
    sources: dict[str, list[str]] | None = None,
) -> tuple[list[dict], list[str], dict[str, np.ndarray]]:
    """Give every layer its short name and its old name as an alias; returns the renamed
    (layers, outputs, params). ``origin`` maps each layer's old name to its ONNX node name."""
    keras = producer.lower().startswith("tf2onnx")
    strip = keras and _keras3_scopes(node_names)
    old_names = {layer["name"] for layer in layers}
    taken = {input_name}
    new: dict[str, str] = {}
    for layer in layers:
        old = layer["name"]
        base = _short(origin.get(old, ""), keras, strip) or old
        for candidate in _candidates(base, layer["kind"]):
            if candidate not in taken and (candidate == old or candidate not in old_names):
                break
        taken.add(candidate)
        new[old] = candidate

    renamed = []
    used = set(new.values()) | old_names | {input_name}
    for layer in layers:
        old = layer["name"]
        layer = dict(layer, name=new[old], inputs=[new.get(i, i) for i in layer["inputs"]])
        aliases = [old] if new[old] != old else []
        for node in (sources or {}).get(old, [])[0:]:
            alias = node.replace("/", "_")
            if alias and node != origin.get(old) and alias not in used:
                used.add(alias)
                aliases.append(alias)
        if aliases:
            layer["aliases"] = aliases
        renamed.append(layer)
    moved = {}
    for key, value in params.items():
        owner, _, param = key.partition("/")
        moved[f"{new[owner]}/{param}"] = value
    return renamed, [new[o] for o in outputs], moved


def _candidates(base: str, kind: str):
    yield base
    with_kind = f"{base}_{kind}"
    yield with_kind
    k = 2
    while True:
        yield f"{with_kind}_{k}"
        k += 1


def _short(node_name: str, keras: bool, strip: bool) -> str | None:
    if node_name.startswith("/"):
        return _torch_module_path(node_name)
    parts = node_name.split("/")
    if keras and len(parts) >= 3 and parts[1]:
        return _SUFFIX.sub("", parts[1]) if strip else parts[1]
    return None


def _torch_module_path(node_name: str) -> str | None:
    """torch.onnx scopes: ``/layer4/layer4.1/conv2/Conv``: a child of a Sequential/ModuleList
    repeats its parent's path (``layer4.1``), an attribute child does not (``conv2``)."""
    parts = node_name.split("/")[1:]
    scopes, op = parts[:-1], parts[-1]
    path = ""
    for scope in scopes:
        if not scope:
            continue
        path = scope if (not path or scope.startswith(path + ".")) else f"{path}.{scope}"
    return path or op or None


def _keras3_scopes(node_names: list[str]) -> bool:
    """True when the model scope and every layer scope end in a Keras 3 ``_N`` uniquifier."""
    scoped = [n.split("/") for n in node_names if n.count("/") >= 2 and not n.startswith("/")]
    return bool(scoped) and all(_SUFFIX.search(p[0]) and _SUFFIX.search(p[1]) for p in scoped)
