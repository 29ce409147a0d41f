"""The state of one ONNX -> pydeconv mapping: layers built so far and what each ONNX tensor became.

Every ONNX tensor that carries an activation maps to a pydeconv tensor: the graph input's name or
a layer's name. Several ONNX tensors may map to one layer (Identity, a constant Add folded into a
bias); ``latest`` remembers the newest one so that folding into a layer is only done when nothing
else reads the layer's earlier value. ``layout`` marks the tensors that ONNX sees with their axes
permuted (tf2onnx's NHWC views, ConvNeXt's channels-last blocks, MTCNN's (0, 3, 2, 1) before the
dense layer): pydeconv keeps them NCHW and records the permutation. Element-wise operators keep it;
with the channels last, a LayerNormalization over the last axis, a MatMul by a constant (a 1x1
convolution) and per-channel constants map too; a flatten records the flattening order for the
linear layer after it, whose columns are permuted to match; Transposes compose it, back to NCHW.
Any other operator that needs such a view as it is (a Softmax or Conv after YOLOv8's DFL
Transpose (0, 2, 1, 3)) gets it materialised by a ``transpose`` layer (``src``).

Rank-3 ONNX tensors (N, A, B) are pydeconv's (N, A, 1, B) (docs/FORMAT.md): A is the channel axis,
so a (C, H, W) -> (C, 1, H*W) reshape keeps the channels and needs no reordering; ``sample_shape``
gives the per-sample (C, H, W) of an ONNX shape. Rank-5 ones are rank 4 with two adjacent axes
merged (rank5.py; ``shapes`` holds the merged shape, ``rank5`` the ONNX one).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import GraphError
from .model import Node
from .shapes import Shape, axes_of

PERMUTED = "permuted"  # value (PERMUTED, perm, (C, H, W)): ONNX sees NCHW axes in `perm` order
FLAT = "flat"  # value (FLAT, perm, (C, H, W)): such a tensor flattened, in its permuted order
NHWC = (0, 2, 3, 1)

# Layers whose bias can absorb a following constant Add, and a constant Mul (per output channel).
_HAS_BIAS = ("conv2d", "linear", "batch_norm", "affine", "conv_transpose2d")
_SCALABLE = ("conv2d", "linear", "batch_norm", "affine")


class Mapper:
    def __init__(
        self,
        consts: dict[str, np.ndarray],
        shapes: dict[str, Shape],
        opset: int,
        input_tensor: str,
        input_name: str,
        uses: Counter,
    ):
        self.consts = consts
        self.shapes = shapes
        self.opset = opset
        self.input_tensor = input_tensor  # the ONNX graph input
        self.input_name = input_name  # its (sanitised) pydeconv name
        self.uses = uses  # ONNX tensor -> how many nodes/graph outputs read it
        self.source: dict[str, str] = {input_tensor: input_name}
        self.latest: dict[str, str] = {}
        self.layout: dict[str, tuple] = {}
        self.input_layout = "NCHW"
        self.layers: list[dict] = []
        self.by_name: dict[str, dict] = {}
        self.params: dict[str, np.ndarray] = {}
        self.taken = {input_name}
        self.origin: dict[str, str] = {}  # layer name -> the ONNX node it came from (naming.py)
        self.sources: dict[str, list[str]] = {}  # layer name -> every ONNX node folded into it
        self.node: Node | None = None  # the node being mapped, for error messages
        # Rank-5 ONNX tensors (rank5.py): tensor -> (ONNX shape, k: axes k, k+1 held merged); the
        # rank-4 tensors each was reshaped from; the nodes reading each tensor (set by importer).
        self.rank5: dict[str, tuple[tuple[int, ...], int]] = {}
        self.roots: dict[str, list[str]] = {}
        self.readers: dict[str, list[Node]] = {}

    # -- errors and lookups ---------------------------------------------------------------------
    def fail(self, why: str) -> GraphError:
        node = self.node
        where = f"{node.op_type} node '{node.label()}': " if node else ""
        return GraphError(where + why)

    def src(self, tensor: str, allow_layout: bool = False) -> str:
        """The pydeconv tensor an activation input maps to."""
        if tensor in self.consts:
            raise self.fail(f"input '{tensor}' is a constant where an activation is expected")
        if tensor not in self.source:
            raise self.fail(f"input '{tensor}' is not produced by any supported node")
        if tensor in self.layout and not allow_layout and self.layout[tensor][0] == PERMUTED:
            return self._materialise(tensor)
        if tensor in self.layout and not allow_layout:
            raise self.fail(
                f"input '{tensor}' is a Transpose'd view of an image tensor (ONNX axes "
                f"{list(self.layout[tensor][1])} of NCHW); this operator needs it as NCHW "
                f"(element-wise operators, a flatten + linear and, with the channels last, "
                f"LayerNormalization and MatMul accept it)"
            )
        return self.source[tensor]

    def _materialise(self, tensor: str) -> str:
        """A ``transpose`` layer that lays a permuted view out as ONNX sees it; ``tensor`` then
        maps to it, as a plain NCHW tensor (named after the node reading it, or after the tensor
        itself for a graph output)."""
        _, perm, _ = self.layout[tensor]
        base = (self.node.name or self.node.outputs[0]) if self.node else tensor
        name = self.unique_name(base + "_transpose")
        layer = {
            "name": name,
            "kind": "transpose",
            "inputs": [self.source[tensor]],
            "attrs": {"perm": [int(p) - 1 for p in perm[1:]]},
        }
        self.origin[name] = base
        self.sources[name] = [base]
        self.layers.append(layer)
        self.by_name[name] = layer
        self.source[tensor] = name
        self.latest[name] = tensor
        del self.layout[tensor]
        return name

    def const(self, node: Node, index: int, what: str) -> np.ndarray:
        name = node.inputs[index] if index < len(node.inputs) else ""
        if not name or name not in self.consts:
            raise self.fail(f"{what} input '{name}' must be a constant (initializer)")
        return self.consts[name].astype(np.float32)

    def shape(self, tensor: str) -> Shape:
        if tensor in self.consts:
            return self.consts[tensor].shape
        if tensor not in self.shapes:
            raise self.fail(f"the shape of '{tensor}' is unknown")
        return self.shapes[tensor]

    def axes(self, node: Node, rank: int) -> list[int] | None:
        return axes_of(node, self.consts, rank)

    # -- building --------------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        base = base.replace("/", "_") or "layer"
        name, k = base, 1
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name

    def emit(
        self,
        node: Node,
        kind: str,
        inputs: list[str],
        attrs: dict | None = None,
        params: dict | None = None,
        suffix: str = "",
        output: str | None = None,
    ) -> str:
        """Append a layer. Without a suffix it becomes what the node's first output (or
        ``output``) maps to."""
        name = self.unique_name((node.name or node.outputs[0]) + suffix)
        layer: dict[str, object] = {"name": name, "kind": kind, "inputs": list(inputs)}
        self.origin[name] = node.name or node.outputs[0]
        self.sources[name] = list(node.sources) or [node.name or node.outputs[0]]
        if attrs:
            layer["attrs"] = attrs
        if params:
            shapes: dict[str, list[int]] = {}
            layer["params"] = shapes
            for key, value in params.items():
                array = np.ascontiguousarray(value, dtype=np.float32)
                self.params[f"{name}/{key}"] = array
                shapes[key] = list(array.shape)
        self.layers.append(layer)
        self.by_name[name] = layer
        if not suffix or output is not None:
            out = output or node.outputs[0]
            self.source[out] = name
            self.latest[name] = out
        return name

    def folded(self, layer: dict, node: Node) -> None:
        """Record that ``node`` was folded into ``layer`` (the layer table lists it)."""
        names = self.sources.setdefault(layer["name"], [])
        for source in node.sources or [node.name or node.outputs[0]]:
            if source not in names:
                names.append(source)

    def alias(self, out: str, tensor: str) -> None:
        """Make ONNX tensor ``out`` carry the same value as ``tensor`` (no layer)."""
        target = self.src(tensor, allow_layout=True)
        self.source[out] = target
        if tensor in self.layout:
            self.layout[out] = self.layout[tensor]
        # The alias inherits the right to fold into the layer only if it is the sole reader.
        if target in self.by_name and self.latest.get(target) == tensor and self.uses[tensor] == 1:
            self.latest[target] = out
        self.shapes.setdefault(out, self.shape(tensor))

    def permutation(self, tensor: str) -> tuple[int, ...] | None:
        """How ONNX sees an activation's NCHW axes (None: as NCHW, or a flattened tensor)."""
        layout = self.layout.get(tensor)
        return layout[1] if layout and layout[0] == PERMUTED else None

    def channels_last(self, tensor: str) -> bool:
        perm = self.permutation(tensor)
        return perm is not None and perm[-1] == 1

    def same_layout(self, out: str, tensor: str) -> None:
        """``out`` (a layer's result) is seen by ONNX in ``tensor``'s permuted layout."""
        if tensor in self.layout:
            self.layout[out] = self.layout[tensor]

    def src_elementwise(self, tensor: str) -> str:
        """An activation for an element-wise layer: a permuted view is fine, a flattened one too."""
        return self.src(tensor, allow_layout=True)

    @staticmethod
    def sample_shape(shape: Shape) -> tuple[int, ...]:
        """pydeconv's per-sample shape of an ONNX activation shape: (C, H, W) for rank 4,
        (A, 1, B) for rank 3, (F,) for rank 2."""
        if len(shape) == 3:
            return (int(shape[1]), 1, int(shape[2]))
        return tuple(int(d) for d in shape[1:])

    def is_raw_input(self, tensor: str) -> bool:
        return (
            tensor == self.input_tensor and self.uses[tensor] == 1 and len(self.shape(tensor)) == 4
        )

    def nhwc_input(self, node: Node, tensor: str) -> None:
        """tf2onnx/Keras: the graph input is NHWC and transposed right away; pydeconv takes NCHW."""
        self.input_layout = "NHWC"
        self.source[node.outputs[0]] = self.input_name

    # -- constant arithmetic on activations ------------------------------------------------------
    def channel_vector(self, c: np.ndarray, tensor: str) -> np.ndarray:
        """A constant broadcast against an activation, as one value per channel (axis 1)."""
        shape = self.shape(tensor)
        c = np.asarray(c, dtype=np.float32)
        if self.channels_last(tensor):
            # ONNX sees (N, ..., C): a constant along the last axis is per channel.
            padded = (1,) * (len(shape) - c.ndim) + c.shape
            if (
                c.ndim > len(shape)
                or any(d != 1 for d in padded[:-1])
                or padded[-1]
                not in (
                    1,
                    shape[-1],
                )
            ):
                raise self.fail(
                    f"constant of shape {list(c.shape)} is not a per-channel value for a "
                    f"channels-last activation of shape {list(shape)}"
                )
            return np.broadcast_to(c.reshape(-1), (shape[-1],)).astype(np.float32)
        if self.permutation(tensor) is not None:
            raise self.fail(
                f"a constant on a Transpose'd view of an image tensor (ONNX axes "
                f"{list(self.layout[tensor][1])} of NCHW) is only supported with the channels last"
            )
        try:
            ok = c.ndim <= len(shape) and tuple(np.broadcast_shapes(c.shape, shape)) == tuple(shape)
        except ValueError:
            ok = False
        padded = (1,) * (len(shape) - c.ndim) + c.shape
        if not ok or len(shape) < 2 or padded[0] != 1 or any(d != 1 for d in padded[2:]):
            raise self.fail(
                f"constant of shape {list(c.shape)} is not a per-channel value for an "
                f"activation of shape {list(shape)}"
            )
        return np.broadcast_to(c.reshape(-1), (shape[1],)).astype(np.float32)

    def constant_tensor(self, c: np.ndarray, tensor: str) -> np.ndarray | None:
        """A constant that broadcasts against an NCHW (rank 4) or (N, A, B) (rank 3) activation
        but is not one value per channel, as the (1, C|1, H|1, W|1) tensor of an ``affine``; None
        for a per-channel constant (or one that does not broadcast: channel_vector says why)."""
        shape = self.shape(tensor)
        c = np.asarray(c, dtype=np.float32)
        if len(shape) not in (3, 4) or c.ndim > len(shape) or tensor in self.layout:
            return None
        padded = (1,) * (len(shape) - c.ndim) + c.shape
        if padded[0] != 1 or any(d not in (1, s) for d, s in zip(padded[1:], shape[1:])):
            return None
        if all(d == 1 for d in padded[2:]):
            return None  # per channel
        sample = padded[1:] if len(shape) == 4 else (padded[1], 1, padded[2])
        return np.ascontiguousarray(c.reshape((1,) + tuple(sample)), dtype=np.float32)

    def _foldable(self, tensor: str) -> dict | None:
        """The layer that produced ``tensor`` if it can be changed in place: nothing else reads
        it."""
        name = self.source.get(tensor)
        if name is None:
            return None
        layer = self.by_name.get(name)
        if layer is None or self.latest.get(name) != tensor or self.uses[tensor] != 1:
            return None
        if tensor in self.layout and not self.channels_last(tensor):
            return None
        if layer["kind"] == "affine" and any(
            self.params[f"{name}/{k}"].ndim == 4 for k in layer.get("params", {})
        ):
            return None  # an affine by constant tensors: per-channel arithmetic does not fold
        return layer

    def _affine(self, node: Node, tensor: str, scale: np.ndarray, bias: np.ndarray) -> None:
        """y = x * scale + bias per channel: an ``affine`` layer on an image tensor; on a (batch,
        features) tensor a batch_norm (mean 0, var 1, epsilon 0)."""
        if len(self.shape(tensor)) in (3, 4):
            params = {}
            if scale.ndim == 4 or np.any(scale != 1):
                params["scale"] = scale
            if bias.ndim == 4 or np.any(bias != 0) or not params:
                params["bias"] = bias
            self.emit(node, "affine", [self.src_elementwise(tensor)], params=params)
            self.same_layout(node.outputs[0], tensor)
            return
        zeros, ones = np.zeros_like(scale), np.ones_like(scale)
        self.emit(
            node,
            "batch_norm",
            [self.src(tensor)],
            {"epsilon": 0.0},
            {"scale": scale, "bias": bias, "mean": zeros, "var": ones},
        )

    def add_constant(self, node: Node, tensor: str, c: np.ndarray) -> None:
        """x + c: into the producing layer's bias when it has one, else a batch_norm; a constant
        that is not per channel (anchor points) an ``affine`` bias tensor."""
        spread = self.constant_tensor(c, tensor)
        if spread is not None:
            ones = np.ones(self.shape(tensor)[1], np.float32)
            self._affine(node, tensor, ones, spread)
            return
        vector = self.channel_vector(c, tensor)
        layer = self._foldable(tensor)
        if layer is not None and layer["kind"] in _HAS_BIAS:
            name = layer["name"]
            key = f"{name}/bias"
            channels = self._out_channels(layer)
            bias = self.params.get(key, np.zeros(channels, np.float32))
            self.params[key] = np.ascontiguousarray(bias + vector, dtype=np.float32)
            layer.setdefault("params", {})["bias"] = [channels]
            self.folded(layer, node)
            self.alias(node.outputs[0], tensor)
        else:
            self._affine(node, tensor, np.ones_like(vector), vector)

    def _out_channels(self, layer: dict) -> int:
        params = self.params
        name = layer["name"]
        if layer["kind"] == "conv_transpose2d":
            weight = params[f"{name}/weight"]
            return int(weight.shape[1] * layer.get("attrs", {}).get("groups", 1))
        for key in ("weight", "scale", "bias"):
            if f"{name}/{key}" in params:
                return int(params[f"{name}/{key}"].shape[0])
        raise self.fail(f"layer '{name}' has no parameters to fold into")  # pragma: no cover

    def scale_by_constant(self, node: Node, tensor: str, c: np.ndarray) -> None:
        """x * c: into a producing conv2d/linear (its output channels), batch_norm or affine,
        else a new affine layer; a constant that is not per channel (strides) an ``affine``
        scale tensor."""
        spread = self.constant_tensor(c, tensor)
        if spread is not None:
            zeros = np.zeros(self.shape(tensor)[1], np.float32)
            self._affine(node, tensor, spread, zeros)
            return
        vector = self.channel_vector(c, tensor)
        layer = self._foldable(tensor)
        if layer is not None and layer["kind"] in _SCALABLE:
            name = layer["name"]
            if layer["kind"] == "affine" and f"{name}/scale" not in self.params:
                self.params[f"{name}/scale"] = np.ones(vector.shape, np.float32)
                layer["params"]["scale"] = [int(vector.shape[0])]
            for key in ("weight", "scale", "bias"):
                full = f"{name}/{key}"
                if full in self.params:
                    value = self.params[full]
                    factor = vector.reshape((-1,) + (1,) * (value.ndim - 1))
                    self.params[full] = np.ascontiguousarray(value * factor, dtype=np.float32)
            self.folded(layer, node)
            self.alias(node.outputs[0], tensor)
        else:
            self._affine(node, tensor, vector, np.zeros_like(vector))

    # -- the end ---------------------------------------------------------------------------------
    def finish(
        self, graph_outputs: list[str]
    ) -> tuple[list[dict], list[str], dict[str, np.ndarray]]:
        """(layers reachable from the outputs, output layer names, their params)."""
        self.node = None
        outputs = []
        for tensor in graph_outputs:
            if tensor in self.consts:
                raise GraphError(f"graph output '{tensor}' is a constant")
            if tensor in self.rank5:
                raise GraphError(
                    f"graph output '{tensor}' is a rank-5 tensor of shape "
                    f"{list(self.rank5[tensor][0])}; pydeconv returns tensors of rank 2 to 4 "
                    f"(make the output a tensor before the rank-5 view, or after it)"
                )
            if tensor in self.layout and self.layout[tensor][0] == PERMUTED:
                self._materialise(tensor)  # laid out as ONNX sees it
            if tensor in self.layout:
                raise GraphError(
                    f"graph output '{tensor}' is a Transpose'd view of an image tensor; pydeconv "
                    f"returns NCHW tensors (make the output the tensor before the Transpose)"
                )
            name = self.source.get(tensor)
            if name is None:
                raise GraphError(f"graph output '{tensor}' is not produced by any node")
            if name == self.input_name:
                raise GraphError(f"graph output '{tensor}' is the graph input itself")
            if name not in outputs:
                outputs.append(name)
        needed, stack = set(), list(outputs)
        while stack:
            name = stack.pop()
            if name in needed or name == self.input_name:
                continue
            needed.add(name)
            stack.extend(self.by_name[name]["inputs"])
        layers = [layer for layer in self.layers if layer["name"] in needed]
        params = {key: value for key, value in self.params.items() if key.split("/")[0] in needed}
        return layers, outputs, params
