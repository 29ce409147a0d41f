"""``import_onnx``: an ONNX file -> the FORMAT.md graph dict and its float32 parameters.

Steps: decode the protobuf (model.py), fold constant subgraphs with NumPy (fold.py), then map each
remaining operator to a pydeconv layer (mapping.py). Any problem raises a ``pydeconv.errors``
exception whose message starts with the file name; nothing partial is ever returned.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError, PydeconvError, UnsupportedOperatorError
from .fold import fold_constants, node_errors
from .mapper import Mapper
from .mapping import OPERATORS
from .model import Graph, Model, ValueInfo, parse_model
from .naming import rename_layers


def import_onnx(
    path: str | os.PathLike, preprocess: dict | None = None, labels: Sequence[str] | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Read an ONNX model; return (graph dict of docs/FORMAT.md, {"LAYER/PARAM": float32 array}).

    The graph's ``preprocess`` records the input size and layout and holds ``preprocess`` as given;
    the format's defaults for what is left out (docs/FORMAT.md) are filled in by the C++ reader
    when the graph is built. ``preprocess["size"]`` [H, W] also fixes an input whose height/width
    are symbolic in the file.
    """
    path = os.fspath(path)
    label = os.path.basename(path) or path
    try:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ModelFormatError(f"cannot read the file ({exc.strerror or exc})") from None
        model = parse_model(data, os.path.dirname(os.path.abspath(path)))
        name = os.path.splitext(label)[0]
        return convert(model, name, preprocess, labels)
    except PydeconvError as exc:
        # Every message names the file; the exception class is kept for callers to catch.
        raise type(exc)(f"{label}: {exc}") from None


def convert(
    model: Model, name: str, preprocess: dict | None = None, labels: Sequence[str] | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    graph = model.graph
    info = _graph_input(graph)
    nhwc = _input_is_nhwc(graph, info.name)
    dims = _input_dims(info, nhwc, (preprocess or {}).get("size"))
    folded = fold_constants(graph.nodes, graph.initializers, info.name, dims)

    unsupported = []
    for node in folded.nodes:
        known = node.domain in ("", "ai.onnx") and node.op_type in OPERATORS
        if not known:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            entry = f"{op} (node '{node.label()}')"
            if entry not in unsupported:
                unsupported.append(entry)
    if unsupported:
        raise UnsupportedOperatorError("unsupported ONNX operators: " + ", ".join(unsupported))

    output_names = [out.name for out in graph.outputs]
    if not output_names:
        raise GraphError("the ONNX graph declares no outputs")
    uses = Counter(name for node in folded.nodes for name in node.inputs if name)
    uses.update(output_names)
    mapper = Mapper(
        folded.consts,
        folded.shapes,
        model.opset,
        info.name,
        info.name.replace("/", "_") or "input",
        uses,
    )
    for node in folded.nodes:
        mapper.node = node
        with node_errors(node, "cannot map it"):
            OPERATORS[node.op_type](mapper, node)
    layers, outputs, params = mapper.finish(output_names)
    if not layers:
        raise GraphError("the ONNX graph maps to no layers")
    layers, outputs, params = rename_layers(
        layers,
        outputs,
        params,
        mapper.origin,
        model.producer,
        [node.name for node in graph.nodes],
        mapper.input_name,
    )

    chw = [dims[3], dims[1], dims[2]] if mapper.input_layout == "NHWC" else list(dims[1:])
    channels_out = _output_channels(mapper, output_names[0])
    doc: dict[str, Any] = {
        "format": "pydeconv",
        "version": 1,
        "name": name,
        "input": {"name": mapper.input_name, "shape": chw},
        "preprocess": _preprocess(chw, mapper.input_layout, preprocess),
    }
    if labels is not None:
        labels = [str(v) for v in labels]
        if channels_out is not None and len(labels) != channels_out:
            raise GraphError(f"{len(labels)} labels given, the output has {channels_out} channels")
        doc["labels"] = labels
    doc["layers"] = layers
    doc["outputs"] = outputs
    return doc, params


def _graph_input(graph: Graph) -> ValueInfo:
    # Older exporters list every initializer as a graph input too; those are not real inputs.
    real = [i for i in graph.inputs if i.name not in graph.initializers]
    if len(real) != 1:
        names = ", ".join(f"'{i.name}'" for i in real) or "none"
        raise GraphError(f"the model must have exactly one input tensor, it has {names}")
    return real[0]


def _input_is_nhwc(graph: Graph, input_name: str) -> bool:
    """True when the input's only reader is tf2onnx's Transpose(0, 3, 1, 2) to NCHW."""
    readers = [n for n in graph.nodes if input_name in n.inputs]
    return (
        len(readers) == 1
        and readers[0].op_type == "Transpose"
        and list(readers[0].attrs.get("perm", [])) == [0, 3, 1, 2]
    )


def _input_dims(info: ValueInfo, nhwc: bool, size: Sequence[int] | None) -> tuple[int, ...]:
    """The input's shape in the file's layout, batch 1 when symbolic, H/W from ``size`` if
    needed."""
    if info.shape is None or len(info.shape) != 4:
        rank = "unknown" if info.shape is None else len(info.shape)
        raise GraphError(f"input '{info.name}' must be a 4-D image tensor (rank is {rank})")
    dims = [_known_size(d) for d in info.shape]
    c_axis, hw_axes = (3, (1, 2)) if nhwc else (1, (2, 3))
    if size is not None:
        if not (
            isinstance(size, (list, tuple))
            and len(size) == 2
            and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size
            )
        ):
            raise GraphError(
                f"preprocess 'size' must be two positive integers [H, W], got {size!r}"
            )
        for axis, value in zip(hw_axes, size):
            if dims[axis] is None:
                dims[axis] = _known_size(int(value))
    if dims[c_axis] is None:
        raise GraphError(f"input '{info.name}' has an unknown channel count ({info.shape})")
    if any(dims[a] is None for a in hw_axes):
        raise GraphError(
            f"input '{info.name}' has symbolic height/width {info.shape}; pass the image "
            f"size as preprocess={{'size': [H, W]}}"
        )
    # Only the batch can still be unknown (symbolic): pydeconv's batch is free, shapes are tracked
    # with 1.
    return tuple(1 if d is None else d for d in dims)


def _known_size(dim: int | str | None) -> int | None:
    """A dimension's size if it is a positive integer; None if symbolic, unknown or not positive."""
    return dim if isinstance(dim, int) and dim > 0 else None


def _output_channels(mapper: Mapper, tensor: str) -> int | None:
    shape = mapper.shapes.get(tensor)
    return int(shape[1]) if shape is not None and len(shape) >= 2 else None


def _preprocess(chw: list[int], layout: str, given: dict | None) -> dict:
    """What the ONNX file says (size, layout) and what the caller gave; the C++ reader validates
    it and fills in the defaults."""
    return {"size": [chw[1], chw[2]], "source_layout": layout, **(given or {})}
