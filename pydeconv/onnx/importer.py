"""``import_onnx``: an ONNX file -> the FORMAT.md graph dict and its float32 parameters.

Steps: decode the protobuf (model.py), fold constant subgraphs with NumPy (fold.py), then map each
remaining operator to a pydeconv layer (mapping.py). Any problem raises a ``pydeconv.errors``
exception whose message starts with the file name; nothing partial is ever returned.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError, PydeconvError, UnsupportedOperatorError
from .fold import fold_constants, node_errors
from .fuse import FUSED_DOMAIN, fuse
from .mapper import Mapper
from .mapping import FUSED, OPERATORS
from .model import Graph, Model, Node, ValueInfo, parse_model
from .naming import rename_layers
from .rank5 import apply, roots_of


def import_onnx(
    path: str | os.PathLike,
    preprocess: dict | None = None,
    labels: Sequence[str] | None = None,
    outputs: Sequence[str] | str | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Read an ONNX model; return (graph dict of docs/FORMAT.md, {"LAYER/PARAM": float32 array}).

    The graph's ``preprocess`` records the input size and layout and holds ``preprocess`` as given;
    the format's defaults for what is left out (docs/FORMAT.md) are filled in by the C++ reader
    when the graph is built. ``preprocess["size"]`` [H, W] also fixes an input whose height/width
    are symbolic in the file.

    ``outputs`` imports part of the graph: a list of ONNX tensor names makes those tensors the
    outputs (only what they need is imported); ``"auto"`` cuts the graph before the first node on
    every path that cannot be mapped (YOLOv5's and YOLOv8's decodes map; a ScatterND that is not a
    slice assignment does not) and makes the tensors it reads, and the graph outputs that still
    map, the outputs. Every output is a layer; the graph dict's ``outputs`` name them in that
    order.
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
        return convert(model, name, preprocess, labels, outputs)
    except PydeconvError as exc:
        # Every message names the file; the exception class is kept for callers to catch.
        raise type(exc)(f"{label}: {exc}") from None


def convert(
    model: Model,
    name: str,
    preprocess: dict | None = None,
    labels: Sequence[str] | None = None,
    outputs: Sequence[str] | str | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    graph = model.graph
    info = _graph_input(graph)
    nhwc = _input_is_nhwc(graph, info.name)
    dims = _input_dims(info, nhwc, (preprocess or {}).get("size"))
    auto = isinstance(outputs, str)
    if auto and outputs != "auto":
        raise GraphError(f"outputs must be a list of ONNX tensor names or 'auto', got {outputs!r}")
    output_names = _output_names(graph, None if auto else outputs)
    nodes = _needed(graph.nodes, output_names)
    folded = fold_constants(nodes, graph.initializers, info.name, dims)
    fused = fuse(folded.nodes, folded.consts, folded.shapes, output_names)
    shape_only = _shape_arithmetic(fused)
    unsupported = [n for n in fused if _handler(n) is None and n.outputs[0] not in shape_only]
    if unsupported and not auto:
        raise UnsupportedOperatorError(_unsupported_message(unsupported))
    if not auto:
        _check_shape_arithmetic(fused)

    uses = Counter(name for node in fused for name in node.inputs if name)
    uses.update(output_names)
    mapper = Mapper(
        folded.consts,
        folded.shapes,
        model.opset,
        info.name,
        info.name.replace("/", "_") or "input",
        uses,
    )
    for node in fused:
        for tensor in node.inputs:
            if tensor:
                mapper.readers.setdefault(tensor, []).append(node)
    cut: set[str] = set(shape_only)  # auto: tensors past a node that could not be mapped
    frontier: list[str] = []
    for node in fused:
        mapper.node = node
        handler = _handler(node)
        if auto:
            reads = [i for i in node.inputs if i and i not in folded.consts]
            if handler is None or any(i in cut for i in reads):
                _cut(node, reads, cut, frontier, mapper)
                continue
            try:
                with node_errors(node, "cannot map it"):
                    apply(handler, mapper, node)
            except GraphError:
                _cut(node, reads, cut, frontier, mapper)
            continue
        assert handler is not None
        try:
            with node_errors(node, "cannot map it"):
                apply(handler, mapper, node)
        except GraphError as exc:
            raise GraphError(
                f"{exc}; outputs='auto' imports the graph up to the nodes that cannot be mapped"
            ) from None
    if auto:
        kept = [t for t in output_names if t not in cut and t in mapper.source]
        kept = roots_of(mapper, kept)  # a rank-5 output: the tensor before its rank-5 view
        output_names = list(dict.fromkeys(frontier + kept))
        if not output_names:
            raise GraphError("outputs='auto': no node of the graph could be mapped")
    layers, outputs_, params = mapper.finish(output_names)
    if not layers:
        raise GraphError("the ONNX graph maps to no layers")
    layers, outputs_, params = rename_layers(
        layers,
        outputs_,
        params,
        mapper.origin,
        model.producer,
        [node.name for node in graph.nodes],
        mapper.input_name,
        mapper.sources,
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
        # A whole detector's output names its K classes: YOLOv8's (N, 4 + K, anchors), YOLOv5's
        # (N, boxes, 5 + K).
        shape = mapper.shapes.get(output_names[0])
        if shape is not None and len(shape) == 3 and len(labels) in (shape[1] - 4, shape[2] - 5):
            pass
        elif channels_out is not None and len(labels) != channels_out:
            raise GraphError(f"{len(labels)} labels given, the output has {channels_out} channels")
        doc["labels"] = labels
    doc["layers"] = layers
    doc["outputs"] = outputs_
    return doc, params


def _handler(node: Node) -> Callable[[Mapper, Node], None] | None:
    if node.domain in ("", "ai.onnx"):
        return OPERATORS.get(node.op_type)
    if node.domain == FUSED_DOMAIN:
        return FUSED.get(node.op_type)
    return None


def _cut(node: Node, reads: list[str], cut: set, frontier: list, mapper: Mapper) -> None:
    """outputs='auto': ``node`` is not imported; the mapped activations it reads become
    outputs (image tensors that pydeconv returns as they are). A Shape reads no values."""
    cut.update(out for out in node.outputs if out)
    if node.op_type in ("Shape", "Size"):
        return
    for name in roots_of(mapper, reads):  # a rank-5 tensor: the tensor before its rank-5 view
        if name in cut or name not in mapper.source or name in mapper.layout:
            continue
        if mapper.source[name] == mapper.input_name:
            continue
        if name not in frontier:
            frontier.append(name)


def _output_names(graph: Graph, wanted: Sequence[str] | None) -> list[str]:
    if wanted is None:
        names = [out.name for out in graph.outputs]
        if not names:
            raise GraphError("the ONNX graph declares no outputs")
        return names
    if not isinstance(wanted, (list, tuple)) or not wanted:
        raise GraphError(f"outputs must be a non-empty list of ONNX tensor names, got {wanted!r}")
    made = {out for node in graph.nodes for out in node.outputs if out}
    for tensor in wanted:
        if not isinstance(tensor, str) or tensor not in made:
            raise GraphError(f"outputs: no node of the graph makes the tensor {tensor!r}")
    return list(dict.fromkeys(wanted))


def _needed(nodes: list[Node], outputs: list[str]) -> list[Node]:
    """The nodes the outputs depend on, in graph order (all of them for the graph's outputs)."""
    producer = {out: node for node in nodes for out in node.outputs if out}
    keep: set[int] = set()
    stack = list(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        stack.extend(name for name in node.inputs if name)
    return [node for node in nodes if id(node) in keep]


def _shape_arithmetic(nodes: list[Node]) -> set[str]:
    """Tensors computed from a Shape that could not be folded (its input's shape is unknown):
    the nodes that make them are only unsupported because of what is before them."""
    tainted: set[str] = set()
    for node in nodes:
        if node.op_type in ("Shape", "Size") or any(i in tainted for i in node.inputs if i):
            tainted.update(out for out in node.outputs if out)
    return tainted


def _check_shape_arithmetic(nodes: list[Node]) -> None:
    """Every operator is supported, but shape arithmetic is left: name the node whose output shape
    is unknown, where the chain starts."""
    producer = {out: n for n in nodes for out in n.outputs}
    for node in nodes:
        if node.op_type not in ("Shape", "Size"):
            continue
        tensor = node.inputs[0]
        cause = producer.get(tensor)
        where = f" (made by {cause.op_type} node '{cause.label()}')" if cause else ""
        raise GraphError(
            f"{node.op_type} node '{node.label()}': the shape of '{tensor}'{where} is unknown, "
            f"so the shape arithmetic after it cannot be folded to constants"
        )


def _unsupported_message(nodes: list[Node]) -> str:
    """Counts by operator type (most frequent first), then every node by name, then what is
    supported."""
    by_op: dict[str, list[str]] = {}
    for node in nodes:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        by_op.setdefault(op, []).append(f"'{node.label()}'")
    ordered = sorted(by_op.items(), key=lambda kv: -len(kv[1]))  # stable: first seen first
    counts = ", ".join(f"{op} x{len(names)}" for op, names in ordered)
    named = "; ".join(f"{op} {', '.join(names)}" for op, names in ordered)
    return (
        f"unsupported ONNX operators: {counts} (nodes: {named}). pydeconv imports these "
        f"operators: {', '.join(sorted(OPERATORS))}; and fuses x*Sigmoid(x) (SiLU), "
        f"x*HardSigmoid(x), x*Tanh(Softplus(x)), the Erf form of GELU and the Reshape-Transpose-"
        f"Reshape channel shuffle (docs/FORMAT.md lists the layer kinds); outputs='auto' imports "
        f"the graph up to the first node that cannot be mapped"
    )


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
