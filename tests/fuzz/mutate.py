"""A seeded, structure-aware mutator for pydeconv's readers (issue 13 section 5).

Every mutant is a pure function of (kind, seed): ``mutant(kind, seed)`` returns ``(name, bytes)``
and ``python tests/fuzz/mutate.py KIND SEED OUT`` writes the same file again, so a seed printed
by the runner reproduces its input exactly. Kinds:

  npz    a model file (.npz): valid zip CRCs and valid .npy framing, with mutated JSON fields
         (numbers, shapes, types, huge/negative/NaN values, deep nesting, missing and extra keys),
         mutated parameter arrays (shape, dtype, NaN) and hand-made .npy headers (huge declared
         shapes, bad descr, garbage header text, trailing or missing bytes)
  onnx   an ONNX file with valid protobuf framing: mutated dims, attributes, data types,
         initializer sizes, operators, opset
  image  PNG / JPEG / PPM / GIF / BMP with mutated headers (declared sizes up to 100000x100000,
         bit depth, colour type, maxval; chunk CRCs recomputed) and truncations

The starting points are tiny seeded models built here (a few layers, inputs of a few pixels), so
one input takes milliseconds when it is accepted. A small share of each kind is raw byte flips.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import struct
import sys
import warnings
import zipfile
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from onnx_writer import OnnxBuilder  # noqa: E402  (tests/onnx_writer.py)

KINDS = ("npz", "onnx", "image", "darknet")

# Values a mutated number becomes: boundaries, huge, negative, non-finite, wrong types.
HOSTILE = [
    0,
    -1,
    1,
    2,
    3,
    7,
    255,
    65535,
    2**31 - 1,
    2**31,
    2**32 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    10**9,
    10**8,
    100000,
    20000,
    1e9,
    1e300,
    -1e9,
    0.5,
    -0.0,
    1e-300,
    math.nan,
    math.inf,
    -math.inf,
    "3",
    "",
    "x" * 300,
    None,
    True,
    False,
    [],
    {},
    [1],
    [1, 2],
    [0, 0, 0],
    [[1]],
    {"a": 1},
]


# -- tiny seed models (the FORMAT.md graph form) ---------------------------------------------------
def _layer(name, kind, inputs, attrs=None, params=None):
    out = {"name": name, "kind": kind, "inputs": [inputs] if isinstance(inputs, str) else inputs}
    if attrs:
        out["attrs"] = attrs
    if params:
        out["params"] = params
    return out


def _conv(name, src, oc, ic, k, pad=0, stride=1, groups=1, bias=True):
    attrs = {
        "kernel_size": [k, k],
        "stride": [stride, stride],
        "padding": [pad] * 4,
        "dilation": [1, 1],
        "groups": groups,
    }
    params = {"weight": [oc, ic // groups, k, k]}
    if bias:
        params["bias"] = [oc]
    return _layer(name, "conv2d", src, attrs, params)


# -- issue 14: the new kinds. Two more seed graphs: every activation with an SE gate (mul) and a
# layer norm; the structure kinds (upsample nearest and bilinear, reflect and constant pad,
# channel_shuffle, slice, affine, conv_transpose2d, a broadcasting mul).
ISSUE14_ACT = [
    _conv("conv1", "input", 4, 3, 3, pad=1),
    _layer("leaky", "leaky_relu", "conv1", {"alpha": 0.1}),
    _layer("prelu", "prelu", "leaky", None, {"slope": [4]}),
    _layer("relu6", "clip", "prelu", {"min": 0.0, "max": 6.0}),
    _layer("silu", "silu", "relu6"),
    _layer("hswish", "hardswish", "silu"),
    _layer("mish", "mish", "hswish"),
    _layer("elu", "elu", "mish", {"alpha": 1.0}),
    _layer("gelu", "gelu", "elu", {"tanh": 1}),
    _layer("tanh", "tanh", "gelu"),
    _layer("gap", "global_avg_pool", "gelu"),
    _conv("se", "gap", 4, 4, 1),
    _layer("hsig", "hardsigmoid", "se", {"alpha": 0.2, "beta": 0.5}),
    _layer("gate", "mul", ["tanh", "hsig"]),
    _layer("clip", "clip", "gate", {"min": -0.5, "max": 0.5}),
    _layer("sig", "sigmoid", "clip"),
    _layer("ln", "layer_norm", "sig", {"epsilon": 1e-5}, {"scale": [4], "bias": [4]}),
    _layer("flatten", "flatten", "ln"),
    _layer("fc", "linear", "flatten", None, {"weight": [2, 4 * 6 * 6], "bias": [2]}),
]
ISSUE14_SHAPE = [
    _conv("conv1", "input", 4, 3, 3, pad=1),
    _layer("up", "upsample", "conv1", {"scale": [2]}),  # 8x8
    _layer("pad", "pad", "up", {"padding": [1, 2, 1, 0], "reflect": 1}),  # 10x10
    _layer("shuffle", "channel_shuffle", "pad", {"groups": 2}),
    _layer("slice", "slice", "shuffle", {"axis": 1, "start": 1, "end": 3}),  # 2 channels
    _layer("aff", "affine", "slice", None, {"scale": [2], "bias": [1]}),
    _layer(
        "convt",
        "conv_transpose2d",
        "aff",
        {"stride": [2, 2], "padding": [1, 1, 1, 1], "output_padding": [1], "dilation": [1, 1]},
        {"weight": [2, 3, 3, 3], "bias": [3]},
    ),  # 3 x 20 x 20
    _layer("up2", "upsample", "slice", {"scale": [2, 2], "bilinear": 1, "align_corners": 1}),
    _layer("cpad", "pad", "up2", {"padding": [0], "value": 0.5}),  # 2 x 20 x 20
    _layer("one", "slice", "cpad", {"start": 0, "end": 1}),  # 1 x 20 x 20: spatial gate
    _layer("gate", "mul", ["convt", "one"]),
    _layer("pool", "max_pool2d", "gate", {"kernel_size": [2, 2], "stride": [2, 2]}),
]
# Attribute values aimed at each new kind's checks: past the range, huge output sizes (upsample
# scales, conv_transpose2d strides, dilations and kernels), wrong arities, non-finite numbers.
ISSUE14_ATTRS = {
    "upsample": {
        "scale": [
            [10**9],
            [10**9, 10**9],
            [2**20, 1],
            [65536, 65536],
            [4096],
            [0],
            [-1],
            [1.5],
            [1, 2, 3],
            [],
            [3],
            [1],
            [1, 10**9],
        ],
        "bilinear": [2, -1, 0.5, 1],
        "align_corners": [2, 1, 0],
    },
    "conv_transpose2d": {
        "stride": [[10**9, 10**9], [65536], [0], [100000, 1], [3], [1]],
        "dilation": [[10**9], [0], [5000, 5000], [2]],
        "output_padding": [[1], [2, 2], [10**9], [5], [0, 1], [-1]],
        "padding": [[10**9] * 4, [100, 100, 100, 100], [-1], [0, 0, 0, 5], [20], [30, 0]],
        "groups": [0, 2, 3, 10**9, 4, -1],
        "kernel_size": [[3, 3], [1, 1], [10**9, 10**9], [5, 5], [3]],
    },
    "pad": {
        "padding": [
            [10**9],
            [10**6] * 4,
            [9, 9, 9, 9],
            [10, 0, 0, 0],
            [5],
            [1, 2],
            [1, 2, 3],
            [-1],
            [4096, 4096],
        ],
        "value": [math.nan, math.inf, 1e300, 1.0],
        "reflect": [1, 2, 0],
    },
    "slice": {"start": [0, 3, 4, 10**9, -1, 2], "end": [0, 1, 5, 10**9, 2], "axis": [0, 2, -1]},
    "channel_shuffle": {"groups": [0, 1, 3, 4, 5, 10**9, -1]},
    "layer_norm": {"epsilon": [0, -1, math.nan, math.inf, 1e-300, 1e300]},
    "clip": {
        "min": [math.nan, 6.0, 1e39, -math.inf, 0.0, 7.0],
        "max": [math.nan, -1.0, 0.0, math.inf],
    },
    "leaky_relu": {"alpha": [math.nan, math.inf, -1e300, 1e39, 0]},
    "elu": {"alpha": [math.nan, math.inf, -1e300, 1e39, 0]},
    "hardsigmoid": {"alpha": [0, math.nan, math.inf, -1], "beta": [math.nan, 1e39, -5]},
    "gelu": {"tanh": [2, 0.5, -1, 1, 0]},
}
# Parameter shapes that pass the archive's checks (array and declaration agree) and reach the
# kind's own: wrong channel counts, wrong ranks, empty.
ISSUE14_PARAM_SHAPES = {
    "slope": [[3], [5], [1], [4, 1], [0], [1, 4, 1, 1]],
    "scale": [[3], [1], [5], [0], [2, 2]],
    "bias": [[3], [1], [5], [0]],
    "weight": [
        [3, 3, 3, 3],
        [2, 1, 3, 3],
        [2, 3, 1, 1],
        [2, 3, 7, 7],
        [2, 3],
        [4, 3, 3, 3],
        [2, 3, 0, 3],
        [2, 3, 64, 64],
    ],
}
ISSUE14_KINDS = [
    "leaky_relu",
    "prelu",
    "clip",
    "sigmoid",
    "tanh",
    "silu",
    "hardsigmoid",
    "hardswish",
    "mish",
    "elu",
    "gelu",
    "mul",
    "affine",
    "upsample",
    "slice",
    "pad",
    "channel_shuffle",
    "conv_transpose2d",
    "layer_norm",
]


def mutate_issue14(rng: random.Random, graph: dict, params: dict) -> None:
    """One mutation aimed at a layer of a new kind: an attribute from ISSUE14_ATTRS, a parameter
    reshaped consistently (declaration and array agree), the input made large, or the layer's
    inputs rewired (a mul of shapes that do not broadcast). In place."""
    layers = [x for x in graph["layers"] if x["kind"] in ISSUE14_KINDS]
    layer = rng.choice(layers)
    r = rng.random()
    table = ISSUE14_ATTRS.get(layer["kind"])
    if r < 0.55 and table:
        for _ in range(rng.choice([1, 1, 2])):
            key = rng.choice(sorted(table))
            layer.setdefault("attrs", {})[key] = rng.choice(table[key])
    elif r < 0.75 and layer.get("params"):
        key = rng.choice(sorted(layer["params"]))
        shape = rng.choice(ISSUE14_PARAM_SHAPES.get(key, [[1], [3]]))
        layer["params"][key] = list(shape)
        arr = np.random.default_rng(rng.randrange(1000)).standard_normal(shape).astype(np.float32)
        if arr.size and rng.random() < 0.2:
            arr.reshape(-1)[0] = rng.choice([np.nan, np.inf])
        params[f"{layer['name']}/{key}"] = arr
    elif r < 0.85:  # a large input: the layers' output sizes grow from it
        graph["input"]["shape"] = rng.choice(
            [[3, 8192, 8192], [3, 1, 65536], [3, 4096, 16], [3, 1024, 1024], [3, 1, 1], [1, 4, 4]]
        )
        if rng.random() < 0.5 and table:
            key = rng.choice(sorted(table))
            layer.setdefault("attrs", {})[key] = rng.choice(table[key])
    else:
        names = ["input"] + [x["name"] for x in graph["layers"]]
        n = 2 if layer["kind"] == "mul" else 1
        layer["inputs"] = [rng.choice(names) for _ in range(rng.choice([n, n, 1, 3]))]
    graph.pop("preprocess", None) if rng.random() < 0.1 else None


def seed_graphs():
    """Three tiny graphs covering every layer kind: a conv/pool chain, a DAG, a dense head."""
    pool = {"kernel_size": [2, 2], "stride": [2, 2]}
    chain = [
        _conv("conv1", "input", 4, 3, 3, pad=1),
        _layer("relu1", "relu", "conv1"),
        _layer("lrn1", "lrn", "relu1", {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 2.0}),
        _layer("pool1", "max_pool2d", "lrn1", dict(pool, ceil_mode=True)),
        _conv("conv2", "pool1", 4, 4, 3, pad=1, groups=2),
        _layer("relu2", "relu", "conv2"),
        _layer("flatten", "flatten", "relu2"),
        _layer("fc", "linear", "flatten", None, {"weight": [3, 4 * 4 * 4], "bias": [3]}),
        _layer("drop", "dropout", "fc"),
        _layer("prob", "softmax", "drop"),
    ]
    dag = [
        _conv("conv1", "input", 3, 3, 3, pad=1),
        _layer("relu1", "relu", "conv1"),
        _conv("conv_b", "relu1", 3, 3, 1, bias=False),
        _layer(
            "bn",
            "batch_norm",
            "conv_b",
            {"epsilon": 1e-3},
            {"scale": [3], "bias": [3], "mean": [3], "var": [3]},
        ),
        _layer("add", "add", ["relu1", "bn"]),
        _layer("cat", "concat", ["add", "relu1"]),
        _layer(
            "avg",
            "avg_pool2d",
            "cat",
            {
                "kernel_size": [3, 3],
                "stride": [2, 2],
                "padding": [1, 1, 1, 1],
                "ceil_mode": True,
                "count_include_pad": False,
            },
        ),
        _layer("gap", "global_avg_pool", "avg"),
    ]
    head = [
        _layer("flatten", "flatten", "input"),
        _layer("fc1", "linear", "flatten", None, {"weight": [5, 3 * 4 * 4], "bias": [5]}),
        _layer("relu", "relu", "fc1"),
        _layer("fc2", "linear", "relu", None, {"weight": [2, 5]}),
    ]
    graphs = []
    for name, layers, hw in (
        ("chain", chain, 8),
        ("dag", dag, 6),
        ("head", head, 4),
        ("act", json.loads(json.dumps(ISSUE14_ACT)), 6),  # fresh copies: mutants edit in place
        ("shape", json.loads(json.dumps(ISSUE14_SHAPE)), 4),
    ):
        graphs.append(
            {
                "format": "pydeconv",
                "version": 1,
                "name": name,
                "input": {"name": "input", "shape": [3, hw, hw]},
                "layers": layers,
                "outputs": [layers[-1]["name"]],
                "preprocess": {
                    "channel_order": "RGB",
                    "scale": 1 / 255,
                    "mean": [0.5, 0.4, 0.3],
                    "std": [0.2, 0.2, 0.2],
                },
            }
        )
    return graphs


def seed_params(graph, rng):
    params = {}
    for layer in graph["layers"]:
        for p, shape in (layer.get("params") or {}).items():
            a = rng.standard_normal(shape).astype(np.float32) * 0.5
            if p == "var":
                a = np.abs(a) + 0.5
            params[f"{layer['name']}/{p}"] = a
    return params


def seed_model(index=0, seed=0):
    """(graph, params) of seed graph ``index`` with parameters drawn from ``seed`` (a valid
    model)."""
    graphs = seed_graphs()
    graph = graphs[index % len(graphs)]
    return graph, seed_params(graph, np.random.default_rng(seed))


# -- .npy / .npz writing ---------------------------------------------------------------------------
def npy_bytes(
    arr: np.ndarray,
    header: dict | str | None = None,
    version=(1, 0),
    pad_data: int = 0,
    cut_data: int = 0,
) -> bytes:
    """A .npy image. ``header`` replaces the header dict (or its text) for hand-made framing."""
    if header is None:
        header = {
            "descr": np.lib.format.dtype_to_descr(arr.dtype),
            "fortran_order": False,
            "shape": arr.shape,
        }
    text = header if isinstance(header, str) else repr(header)
    hlen_size = 2 if version[0] == 1 else 4
    total = 6 + 2 + hlen_size + len(text) + 1
    text = text + " " * ((64 - total % 64) % 64) + "\n"
    enc = "latin1" if version[0] < 3 else "utf8"
    htext = text.encode(enc, "replace")
    hlen = struct.pack("<H" if hlen_size == 2 else "<I", len(htext) % (1 << (8 * hlen_size)))
    data = arr.tobytes()
    if cut_data:
        data = data[: max(0, len(data) - cut_data)]
    return b"\x93NUMPY" + bytes(version) + hlen + htext + data + b"\0" * pad_data


def zip_bytes(members: list[tuple[str, bytes]], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are one of the mutations
        for name, data in members:
            zf.writestr(
                zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)) if not compress else name,
                data,
                compress_type=method,
            )
    return buf.getvalue()


def graph_bytes(graph, rng=None) -> bytes:
    return json.dumps(graph, allow_nan=True).encode("utf-8")


def model_bytes(graph, params, compress=False) -> bytes:
    blob = graph if isinstance(graph, bytes) else graph_bytes(graph)
    members = [("__graph__.npy", npy_bytes(np.frombuffer(blob, np.uint8)))]
    members += [(f"{k}.npy", npy_bytes(v)) for k, v in params.items()]
    return zip_bytes(members, compress)


# -- JSON mutations --------------------------------------------------------------------------------
def _paths(obj, prefix=()):
    """Every (path, value) inside a JSON value, containers included."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _hostile(rng: random.Random, old):
    r = rng.random()
    if isinstance(old, bool) or not isinstance(old, (int, float)) or r < 0.5:
        return rng.choice(HOSTILE)
    if r < 0.7:
        return old + rng.choice([-2, -1, 1, 2])
    if r < 0.85:
        return old * rng.choice([-1, 0, 2, 1000, 10**6])
    return float(old) + rng.choice([0.5, -0.5, 1e-7])


def deep(n: int, leaf="[]", kind="["):
    close = "]" if kind == "[" else "}"
    if kind == "{":
        return '{"a":' * n + leaf + close * n
    return kind * n + leaf + close * n


def mutate_graph(rng: random.Random, graph: dict):
    """One to three structural mutations of the graph dict; returns a dict or raw JSON bytes."""
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        r = rng.random()
        paths = [p for p, _ in _paths(graph) if p]
        if r < 0.45:  # one value anywhere becomes a hostile value
            path = rng.choice(paths)
            _set(graph, path, _hostile(rng, dict(_paths(graph))[path]))
        elif r < 0.6:  # a number inside a shape-like field: the input shape, params, sizes, attrs
            path = rng.choice(
                [
                    p
                    for p in paths
                    if any(
                        k in ("shape", "params", "attrs", "size", "preprocess")
                        for k in p
                        if isinstance(k, str)
                    )
                ]
                or paths
            )
            val = dict(_paths(graph))[path]
            _set(
                graph,
                path,
                _hostile(rng, val)
                if not isinstance(val, list) or not val
                else [_hostile(rng, v) if rng.random() < 0.5 else v for v in val],
            )
        elif r < 0.68:  # delete a key
            dpaths = [p for p in paths if isinstance(p[-1], str)]
            if dpaths:
                path = rng.choice(dpaths)
                parent = graph
                for p in path[:-1]:
                    parent = parent[p]
                del parent[path[-1]]
        elif r < 0.74:  # an unknown key
            cands = [v for _, v in _paths(graph) if isinstance(v, dict)]
            rng.choice(cands)["x_" + str(rng.randrange(100))] = rng.choice(HOSTILE)
        elif r < 0.8:  # layers: duplicate, drop, swap kinds, bogus inputs
            layers = graph.get("layers")
            if isinstance(layers, list) and layers and all(isinstance(x, dict) for x in layers):
                i = rng.randrange(len(layers))
                op = rng.randrange(4)
                if op == 0:
                    layers.insert(rng.randrange(len(layers) + 1), json.loads(json.dumps(layers[i])))
                elif op == 1:
                    del layers[i]
                elif op == 2:
                    layers[i]["kind"] = rng.choice(
                        [
                            "conv2d",
                            "relu",
                            "max_pool2d",
                            "avg_pool2d",
                            "linear",
                            "lrn",
                            "add",
                            "concat",
                            "flatten",
                            "softmax",
                            "dropout",
                            "batch_norm",
                            "global_avg_pool",
                            "deconv",
                            "Conv",
                            "",
                        ]
                        + ISSUE14_KINDS
                    )
                else:
                    layers[i]["inputs"] = rng.choice(
                        [
                            [],
                            ["nope"],
                            [layers[i].get("name")],
                            ["input"] * 3,
                            [layers[-1].get("name")],
                        ]
                    )
        elif r < 0.9:  # preprocess fields (issue 13 section 3: validated at load)
            pre = graph.setdefault("preprocess", {}) if isinstance(graph, dict) else {}
            if isinstance(pre, dict):
                field = rng.choice(
                    ["size", "mean", "std", "scale", "channel_order", "source_layout"]
                )
                pre[field] = rng.choice(
                    [
                        [20000, 20000],
                        [100000, 100000],
                        [0, 0],
                        [-1, 8],
                        [8],
                        [1e9, 1],
                        [math.nan] * 3,
                        [0, 0, 0],
                        [1, 2],
                        "bgr",
                        "xyz",
                        "L",
                        math.nan,
                        math.inf,
                        0,
                        -1,
                        None,
                        "NHWC",
                        [[1]],
                        {"a": 1},
                    ]
                )
        else:  # deep nesting or a very long list, written as raw JSON text
            n = rng.choice([65, 200, 1000, 100000])
            blob = json.dumps(graph, allow_nan=True)
            at = rng.choice(['"x_deep": ', '"name": '])
            inner = deep(n, kind=rng.choice("[{"))
            return (
                blob.replace("{", "{" + at + inner + ", ", 1).encode()
                if at == '"x_deep": '
                else blob.replace('"name": "chain"', '"name": ' + inner).encode()
            )
    return graph


# -- .npz mutants ----------------------------------------------------------------------------------
def _mutate_array(rng: random.Random, arr: np.ndarray) -> np.ndarray:
    r = rng.random()
    if r < 0.25:
        return arr.astype(rng.choice(["<f8", "<f2", "<i4", "|u1", ">f4", "|b1", "<i8", "<c8"]))
    if r < 0.45:
        flat = arr.reshape(-1)
        return rng.choice(
            [
                flat,
                arr[..., :0],
                flat[:-1] if flat.size else flat,
                np.concatenate([flat, flat]),
                arr[np.newaxis],
                arr.T if arr.ndim > 1 else arr.reshape(-1, 1),
            ]
        )
    if r < 0.6:
        out = arr.copy()
        if out.size:
            out.reshape(-1)[rng.randrange(out.size)] = rng.choice(
                [np.nan, np.inf, -np.inf, 3e38, 1e-45]
            )
        return out
    if r < 0.7:
        return np.zeros((0,), np.float32)
    return np.asfortranarray(arr) if arr.ndim > 1 else arr[::-1].copy()


def _npy_header_mutant(rng: random.Random, arr: np.ndarray) -> bytes:
    """A .npy member whose framing (magic, version, header length) is valid but the header is
    not."""
    descr = np.lib.format.dtype_to_descr(arr.dtype)
    r = rng.randrange(10)
    if r == 0:  # huge declared shapes (250e9 floats), negative, wrong types
        shape = rng.choice(
            [
                (250_000_000_000,),
                (10**9, 32, 32),
                (-1,),
                (2**62, 4),
                (2**31,),
                ("3",),
                (1.5,),
                (0, 10**18),
                (2**63 - 1, 2**63 - 1),
            ]
        )
        return npy_bytes(arr, {"descr": descr, "fortran_order": False, "shape": shape})
    if r == 1:
        return npy_bytes(
            arr,
            {
                "descr": rng.choice(
                    [
                        "<f3",
                        "O",
                        "|O",
                        "<U4",
                        "V8",
                        "<M8[s]",
                        "xyz",
                        "",
                        3,
                        "[('a','<f4')]",
                        ">f4",
                        "<f16",
                    ]
                ),
                "fortran_order": False,
                "shape": arr.shape,
            },
        )
    if r == 2:  # header text that is not a dict literal (tokenize / syntax errors in NumPy)
        return npy_bytes(
            arr,
            rng.choice(
                [
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (3,",
                    "{'descr': '<f4' 'fortran_order': False}",
                    '"""',
                    "(((",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}",
                    "{}",
                    "None",
                    "{'descr': '<f4', 'fortran_order': 1, 'shape': [3]}",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} #",
                    "'\\x00",
                    "{1: 2}",
                    "{'descr': '<f4', 'shape': (3,)}",
                    "__import__('os')",
                    "{'descr':'<f4','fortran_order':False,"
                    "'shape':(" + "(" * 200 + ")" * 200 + ",)}",
                ]
            ),
        )
    if r == 3:
        return npy_bytes(
            arr, version=rng.choice([(2, 0), (3, 0), (4, 0), (0, 0), (1, 1), (255, 255)])
        )
    if r == 4:  # trailing bytes (Python accepts, C++ rejects: issue 13 section 5) or missing bytes
        return (
            npy_bytes(arr, pad_data=rng.choice([1, 4, 4096]))
            if rng.random() < 0.5
            else npy_bytes(arr, cut_data=rng.choice([1, 4, 10**6]))
        )
    if r == 5:
        return npy_bytes(arr, {"descr": descr, "fortran_order": True, "shape": arr.shape})
    data = npy_bytes(arr)
    if r == 6:  # header length field points past the data / is zero
        hl = rng.choice([0, 1, 0xFFFF, len(data)])
        return data[:8] + struct.pack("<H", hl) + data[10:]
    if r == 7:
        return data[: rng.randrange(len(data) + 1)]
    if r == 8:
        return b"\x93NUMPX" + data[6:]
    return data + data


def npz_mutant(rng: random.Random) -> bytes:
    graph, params = seed_model(rng.randrange(5), rng.randrange(1000))
    r = rng.random()
    compress = rng.random() < 0.2
    if graph["name"] in ("act", "shape") and rng.random() < 0.5:  # issue 14: aimed at new kinds
        for _ in range(rng.choice([1, 1, 2])):
            mutate_issue14(rng, graph, params)
        if rng.random() < 0.25:
            return model_bytes(mutate_graph(rng, graph), params, compress)
        return model_bytes(graph, params, compress)
    if r < 0.55:  # the JSON graph
        return model_bytes(mutate_graph(rng, graph), params, compress)
    if r < 0.7:  # a parameter array through NumPy's own writer
        key = rng.choice(sorted(params))
        if rng.random() < 0.8:
            params[key] = _mutate_array(rng, params[key])
        elif rng.random() < 0.5:
            del params[key]
        else:
            params["extra/x"] = np.zeros(3, np.float32)
        return model_bytes(graph, params, compress)
    if r < 0.85:  # hand-made .npy framing of one member (or the graph member)
        members = [("__graph__.npy", npy_bytes(np.frombuffer(graph_bytes(graph), np.uint8)))]
        members += [(f"{k}.npy", npy_bytes(v)) for k, v in params.items()]
        i = rng.randrange(len(members))
        name, _ = members[i]
        arr = np.frombuffer(graph_bytes(graph), np.uint8) if i == 0 else params[name[:-4]]
        members[i] = (name, _npy_header_mutant(rng, arr))
        return zip_bytes(members, compress)
    if (
        r < 0.93
    ):  # archive structure: names, duplicates, extra or missing members, the graph's dtype
        members = [("__graph__.npy", npy_bytes(np.frombuffer(graph_bytes(graph), np.uint8)))]
        members += [(f"{k}.npy", npy_bytes(v)) for k, v in params.items()]
        op = rng.randrange(6)
        if op == 0:
            members.append(rng.choice(members))
        elif op == 1:
            members.append(("readme.txt", b"hello"))
        elif op == 2:
            members = members[1:]
        elif op == 3:
            members[0] = (
                "__graph__.npy",
                npy_bytes(np.frombuffer(graph_bytes(graph), np.uint8).astype("<f4")),
            )
        elif op == 4:
            members[0] = (
                "__graph__.npy",
                npy_bytes(np.frombuffer(b"\xff\xfe" + graph_bytes(graph), np.uint8)),
            )
        else:
            members = [
                (n.replace(".npy", rng.choice(["", ".NPY", "/../x.npy", "\x00.npy"])), d)
                for n, d in members
            ]
        return zip_bytes(members, compress)
    data = bytearray(model_bytes(graph, params, compress))  # raw byte flips (CRCs now wrong)
    for _ in range(rng.choice([1, 2, 8])):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data[: rng.choice([len(data), rng.randrange(len(data) + 1)])])


# -- ONNX mutants ----------------------------------------------------------------------------------
def onnx_seed(rng_np, variant=0) -> OnnxBuilder:
    if variant >= 3:
        return onnx_seed14(rng_np, variant)
    b = OnnxBuilder()
    x = b.input("x", [1, 3, 6, 6])
    w = b.init("w", rng_np.standard_normal((4, 3, 3, 3)).astype(np.float32))
    bias = b.init("b", rng_np.standard_normal(4).astype(np.float32), storage="typed")
    t = b.node("Conv", [x, w, bias], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    t = b.node("Relu", [t])
    if variant == 0:
        t = b.node("MaxPool", [t], kernel_shape=[2, 2], strides=[2, 2])
        t = b.node("Flatten", [t], axis=1)
        t = b.node(
            "Gemm", [t, b.init("fc", rng_np.standard_normal((2, 36)).astype(np.float32))], transB=1
        )
    elif variant == 1:
        t = b.node(
            "BatchNormalization",
            [t]
            + [
                b.init(n, (rng_np.random(4) + 0.5).astype(np.float32))
                for n in ("s", "bb", "m", "v")
            ],
            epsilon=1e-3,
        )
        t = b.node("AveragePool", [t], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        t = b.node("GlobalAveragePool", [t])
    else:
        t = b.node("LRN", [t], size=3, alpha=1e-4, beta=0.75, bias=1.0)
        t = b.node("Concat", [t, t], axis=1)
        t = b.node("Softmax", [t], axis=1)
    b.output(t, [])
    return b


# -- issue 14: ONNX seeds of the new operators (opset 20: Gelu, Mish, HardSwish) ------------------
def onnx_seed14(rng_np, variant) -> OnnxBuilder:
    """Variant 3: every activation operator, an SE gate (Mul) and a channels-last
    LayerNormalization; variant 4: Resize, Pad (reflect), Split, ConvTranspose, Slice, Clip, a
    second output."""
    b = OnnxBuilder(opset=20)

    def f32(*shape, lo=None):
        a = rng_np.standard_normal(shape).astype(np.float32)
        return np.abs(a) + 0.5 if lo else a

    x = b.input("x", [1, 3, 6, 6])
    t = b.node(
        "Conv",
        [x, b.init("w", f32(4, 3, 3, 3)), b.init("b", f32(4))],
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    if variant == 3:
        t = b.node("LeakyRelu", [t], alpha=0.1)
        t = b.node("PRelu", [t, b.init("slope", f32(4, 1, 1))])
        t = b.node("Clip", [t, b.init("lo", np.float32(0)), b.init("hi", np.float32(6))])
        t = b.node("HardSwish", [t])
        t = b.node("Mish", [t])
        t = b.node("Elu", [t], alpha=1.0)
        t = b.node("Gelu", [t], approximate="tanh")
        t = b.node("Tanh", [t])
        g = b.node("GlobalAveragePool", [t])
        g = b.node("Conv", [g, b.init("se", f32(4, 4, 1, 1))], kernel_shape=[1, 1])
        g = b.node("HardSigmoid", [g], alpha=0.2, beta=0.5)
        t = b.node("Mul", [t, g])
        t = b.node("Sigmoid", [t])
        t = b.node("Transpose", [t], perm=[0, 2, 3, 1])
        t = b.node(
            "LayerNormalization",
            [t, b.init("ln_s", f32(4, lo=1)), b.init("ln_b", f32(4))],
            axis=-1,
            epsilon=1e-5,
        )
        t = b.node("Transpose", [t], perm=[0, 3, 1, 2])
        b.output(t, [])
        return b
    t = b.node(
        "Resize",
        [t, "", b.init("scales", np.array([1, 1, 2, 2], np.float32))],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    t = b.node(
        "Pad", [t, b.init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], mode="reflect"
    )
    b.node("Split", [t, b.init("split", np.array([2, 2], np.int64))], outputs=["s0", "s1"], axis=1)
    y = b.node(
        "ConvTranspose",
        ["s0", b.init("wt", f32(2, 3, 3, 3)), b.init("bt", f32(3))],
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        output_padding=[1, 1],
    )
    b.output(y, [])
    z = b.node(
        "Slice",
        [
            "s1",
            b.init("st", np.array([1], np.int64)),
            b.init("en", np.array([2], np.int64)),
            b.init("ax", np.array([1], np.int64)),
        ],
    )
    z = b.node("Resize", [z, "", b.init("sc2", np.array([1, 1, 2, 2], np.float32))], mode="linear")
    b.output(b.node("Clip", [z], min=-0.5, max=0.5) if False else b.node("Relu", [z]), [])
    return b


def onnx_mutant(rng: random.Random) -> bytes:
    b = onnx_seed(np.random.default_rng(rng.randrange(1000)), rng.randrange(5))
    packed = rng.random() < 0.8
    for _ in range(rng.choice([1, 1, 2, 3])):
        r = rng.random()
        if r < 0.25:  # an attribute value
            node = rng.choice(b.nodes)
            if node.attrs and rng.random() < 0.8:
                k = rng.choice(sorted(node.attrs))
                v = node.attrs[k]
                node.attrs[k] = (
                    [_int_hostile(rng) for _ in v]
                    if isinstance(v, list) and rng.random() < 0.7
                    else rng.choice([_int_hostile(rng), 1e30, math.nan, "same", [], [1] * 9])
                )
            else:
                node.attrs[
                    rng.choice(
                        [
                            "kernel_shape",
                            "pads",
                            "strides",
                            "dilations",
                            "group",
                            "axis",
                            "auto_pad",
                            "ceil_mode",
                            "count_include_pad",
                            "transA",
                        ]
                    )
                ] = rng.choice(
                    [[3, 3], [0, 0], -1, 2, "SAME_UPPER", [10**9, 10**9], [1, 1, 1, 1, 1, 1]]
                )
        elif r < 0.45:  # an initializer: shape, dtype, size mismatch
            name = rng.choice(sorted(b.inits))
            init = b.inits[name]
            op = rng.randrange(5)
            if op == 0:
                init.array = init.array.astype(
                    rng.choice([np.float64, np.float16, np.int32, np.int64])
                )
            elif op == 1:
                init.array = init.array.reshape(-1)
            elif op == 2:
                init.array = init.array.reshape(-1)[:-1]  # a scalar becomes empty
            elif op == 3:
                init.storage = "typed" if init.storage == "raw" else "raw"
            else:
                a = init.array.astype(
                    np.float32 if init.array.dtype.kind != "f" else init.array.dtype
                ).reshape(-1)
                if a.size:
                    a[rng.randrange(a.size)] = rng.choice([np.nan, np.inf])
                init.array = a.reshape(init.array.shape)
        elif r < 0.6:  # the graph input's dims
            name, shape = b.inputs[0]
            if not shape:
                continue
            i = rng.randrange(len(shape))
            shape[i] = rng.choice([0, -1, 10**9, 2**31, 2**63 - 1, 100000, "N", "H", 1, 2])
            if rng.random() < 0.2:
                shape[:] = rng.choice([[], [1], [1, 3], [1, 3, 6, 6, 1]])
        elif r < 0.7:  # operators and wiring
            node = rng.choice(b.nodes)
            op = rng.randrange(4)
            if op == 0:
                node.op = rng.choice(
                    [
                        "Conv",
                        "Relu",
                        "Gemm",
                        "MatMul",
                        "Add",
                        "Reshape",
                        "LSTM",
                        "If",
                        "Loop",
                        "ConvTranspose",
                        "Sigmoid",
                        "Identity",
                        "",
                        "Dropout",
                        "Pad",
                    ]
                )
            elif op == 1:
                node.inputs = rng.choice([[], ["missing"], node.inputs * 2, node.outputs])
            elif op == 2:
                node.domain = rng.choice(["ai.onnx.ml", "com.microsoft", "x"])
            else:
                b.nodes.append(b.nodes[0])  # a name produced twice
        elif r < 0.75:
            b.opset = rng.choice([0, 1, 6, 7, 9, 21, 100, 2**31, -1])
        elif (
            r < 0.85
        ):  # a big declared initializer with tiny data (external data refused: no folder)
            name = rng.choice(sorted(b.inits))
            b.inits[name].external = "w.bin"
            b.inits[name].location = rng.choice(
                ["w.bin", "../../etc/passwd", "/etc/passwd", "", "a" * 300]
            )
        else:
            return _proto_byte_mutant(rng, b.to_bytes(None, packed))
    return b.to_bytes(None, packed)


def _int_hostile(rng: random.Random):
    return rng.choice([0, -1, 1, 2, 3, 7, 10**9, 2**31 - 1, 2**31, 2**63 - 1, -(2**63), 100000])


def _proto_byte_mutant(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage on top of the framing: varint bytes, truncation, appended junk fields."""
    d = bytearray(data)
    op = rng.randrange(4)
    if op == 0:
        for _ in range(rng.choice([1, 3, 10])):
            d[rng.randrange(len(d))] = rng.choice([0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    elif op == 1:
        d = d[: rng.randrange(len(d))]
    elif op == 2:  # a length-delimited field claiming more bytes than there are
        d += bytes([0x3A]) + b"\xff\xff\xff\xff\x0f"
    else:  # deep nesting of length-delimited fields (graph -> node -> attribute -> ...)
        inner = b""
        for _ in range(rng.choice([100, 1000, 5000])):
            inner = bytes([0x3A]) + _varint(len(inner)) + inner
        d += inner
    return bytes(d)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
        v >>= 7
        if not v:
            return bytes(out)


# -- image mutants ---------------------------------------------------------------------------------
def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + tag
        + body
        + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    )


def _png(rng: random.Random, w, h, depth=8, ctype=2, raw=None) -> bytes:
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype, 3)
    if raw is None:
        row = 1 + max(1, (w * chans * depth + 7) // 8) if w < 4096 else 1 + 3 * 8
        rows = min(h, 64)
        raw = bytes(rng.randrange(256) for _ in range(min(row * rows, 4096)))
    ihdr = struct.pack(">IIBBBBB", w & 0xFFFFFFFF, h & 0xFFFFFFFF, depth, ctype, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    if ctype == 3:
        out += _png_chunk(
            b"PLTE", bytes(rng.randrange(256) for _ in range(3 * rng.choice([1, 16, 256])))
        )
    return out + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def _pil_bytes(rng: random.Random, fmt: str) -> bytes:
    from PIL import Image

    w, h = rng.choice([1, 3, 8, 17]), rng.choice([1, 4, 8, 13])
    mode = (
        rng.choice(["RGB", "L", "RGBA", "P", "1"])
        if fmt in ("PNG", "GIF", "BMP")
        else rng.choice(["RGB", "L"])
    )
    if fmt == "GIF" and mode in ("RGBA",):
        mode = "P"
    arr = np.random.default_rng(rng.randrange(1000)).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB").convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _ppm(rng: random.Random) -> bytes:
    magic = rng.choice([b"P6", b"P5", b"P3", b"P2", b"P4", b"P1", b"P7", b"P9"])
    w = rng.choice([4, 1, 0, -1, 100000, 2**31, 2**32 + 4, 10**20])
    h = rng.choice([4, 1, 0, 100000, 2**31, 10**20])
    maxval = rng.choice([255, 1, 0, 65535, 65536, 256, -1])
    comment = rng.choice([b"", b"# c\n", b"#" * 1000 + b"\n"])
    header = (
        magic
        + b"\n"
        + comment
        + str(w).encode()
        + b" "
        + str(h).encode()
        + b"\n"
        + str(maxval).encode()
        + b"\n"
    )
    body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 48, 96, 200])))
    return header + body


def image_mutant(rng: random.Random) -> tuple[str, bytes]:
    fmt = rng.choice(["png", "png", "jpg", "ppm", "ppm", "gif", "bmp"])
    if fmt == "png" and rng.random() < 0.7:  # declared sizes and modes, with valid CRCs
        w = rng.choice([1, 4, 8, 0, 100000, 2**31 - 1, 2**31, 70000, 20000, 5])
        h = rng.choice([1, 4, 8, 0, 100000, 2**31 - 1, 65536, 20000, 7])
        data = _png(
            rng, w, h, rng.choice([8, 8, 1, 2, 4, 16, 3, 0]), rng.choice([2, 2, 0, 3, 4, 6, 1, 7])
        )
    elif fmt == "ppm":
        data = _ppm(rng)
    else:
        data = bytearray(
            _pil_bytes(rng, {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP"}[fmt])
        )
        op = rng.randrange(4)
        if op == 0 and fmt == "jpg":  # SOF0 height/width
            i = data.find(b"\xff\xc0")
            if i >= 0 and i + 9 < len(data):
                data[i + 5 : i + 9] = struct.pack(
                    ">HH", rng.choice([0, 1, 65535, 20000]), rng.choice([0, 1, 65535])
                )
        elif op == 0 and fmt == "gif":
            data[6:10] = struct.pack("<HH", rng.choice([0, 65535, 20000]), rng.choice([0, 65535]))
        elif op == 0 and fmt == "bmp" and len(data) > 26:
            w, h = rng.choice([0, -1, 100000, 2**31 - 1]), rng.choice([0, -100000, 2**31 - 1])
            data[18:26] = struct.pack("<ii", w, h)
        elif op == 1:
            data = data[: rng.randrange(len(data))]
        elif op == 2:
            for _ in range(rng.choice([1, 4])):
                data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    return fmt, data


# -- issue 14: Darknet cfg + weights mutants -------------------------------------------------------
# Values a cfg key becomes: the text Darknet's atoi/atof would read differently, huge and negative
# numbers, lists where one value is due, a 5000-digit integer (past Python's int() digit limit).
CFG_HOSTILE = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "-2",
    "1000000000",
    "99999999999999999999",
    "2147483648",
    "65536",
    "100000",
    "nan",
    "inf",
    "-inf",
    "1.5",
    "1e9",
    "",
    "abc",
    "3,4",
    "-1e9",
    "0x10",
    "1,,2",
    ",",
    "+3",
    "016",
    "1" * 5000,
    "-" + "9" * 30,
    "linear",
    "leaky",
    "mish",
    "swish",
    "logistic",
    "relu",
    "tanh",
    "selu",
    "-1,-2",
    "-100",
    "0,1,2,3,4,5,6,7,8",
    "1,2",
    "-0",
    "\u0663",
]
# Keys a section may gain (known to some section, or not at all).
CFG_KEYS = [
    "filters",
    "size",
    "stride",
    "pad",
    "padding",
    "activation",
    "batch_normalize",
    "groups",
    "group_id",
    "layers",
    "from",
    "mask",
    "anchors",
    "classes",
    "num",
    "output",
    "stride_x",
    "stride_y",
    "dilation",
    "scale_x_y",
    "new_coords",
    "channels",
    "width",
    "height",
    "reverse",
    "flipped",
    "antialiasing",
    "xnor",
    "binary",
    "probability",
    "type",
    "letter_box",
    "bogus",
]
CFG_SECTIONS = [
    "convolutional",
    "maxpool",
    "route",
    "shortcut",
    "upsample",
    "yolo",
    "connected",
    "avgpool",
    "softmax",
    "dropout",
    "cost",
    "net",
    "crop",
    "reorg",
    "local",
    "region",
    "sam",
    "scale_channels",
    "conv",
    "max",
    "network",
    "",
]


def _darknet_seed(rng: random.Random):
    import darknet_files as df  # tests/darknet_files.py

    name = rng.choice(["v3tiny", "v4tiny", "mixed", "classifier", "gap", "connected_bn"])
    secs = {"connected_bn": df.CONNECTED_BN, **df.NETS, **df.CLASSIFIERS}[name]
    size = {"classifier": 32, "gap": 16, "connected_bn": 32}.get(name, 32)
    return df, [dict(s) for s in secs], size


def _darknet_weights(df, secs, size, version, seed) -> bytes:
    """Weights matching ``secs`` as pydeconv reads the cfg (so the damage reaches past the size
    check): the blob counts from pydeconv.darknet's plan when it accepts the cfg and they are
    small, else the unmutated net's weights."""
    try:
        from pydeconv.darknet.cfg import parse_cfg
        from pydeconv.darknet.convert import plan

        p = plan(parse_cfg(df.cfg_text(secs, width=size, height=size)), None)
        total = sum(b.count for b in p.blobs)
        if total <= 1 << 20:
            rng = np.random.default_rng(seed)
            floats = rng.uniform(0.5, 1.5, total).astype(np.float32)
            return df.header(version) + floats.tobytes()
    except Exception:  # noqa: BLE001 - the run itself reports what the reader does with it
        pass
    return b""


def darknet_mutant(rng: random.Random) -> tuple[bytes, bytes | None]:
    """(cfg text, weights or None for a missing file) of one Darknet mutant."""
    df, secs, size = _darknet_seed(rng)
    version = rng.choice([(0, 2, 0), (0, 2, 0), (0, 1, 0), (1, 0, 0), (0, 0, 0)])
    net_extra = ""
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        r = rng.random()
        i = rng.randrange(len(secs))
        sec = secs[i]
        keys = [k for k in sec if not k.startswith("_")]
        if r < 0.35 and keys:  # a value
            sec[rng.choice(keys)] = rng.choice(CFG_HOSTILE)
        elif r < 0.45:  # a key added (known elsewhere, or unknown)
            sec[rng.choice(CFG_KEYS)] = rng.choice(CFG_HOSTILE + ["1", "2", "-1"])
        elif r < 0.52 and keys:  # a key deleted
            del sec[rng.choice(keys)]
        elif r < 0.62:  # sections: delete, duplicate, swap, rename, insert a bare one
            op = rng.randrange(5)
            if op == 0 and len(secs) > 1:
                del secs[i]
            elif op == 1:
                secs.insert(rng.randrange(len(secs) + 1), dict(sec))
            elif op == 2:
                j = rng.randrange(len(secs))
                secs[i], secs[j] = secs[j], secs[i]
            elif op == 3:
                sec["_kind"] = rng.choice(CFG_SECTIONS)
            else:
                kind = rng.choice(CFG_SECTIONS)
                new = {"_kind": kind}
                for _ in range(rng.randrange(4)):
                    new[rng.choice(CFG_KEYS)] = rng.choice(CFG_HOSTILE + ["1", "2", "-1", "3"])
                secs.insert(rng.randrange(len(secs) + 1), new)
        elif r < 0.75:  # [net]: the input size and channels (huge, zero, odd)
            key = rng.choice(["width", "height", "channels", "size"])
            val = rng.choice(
                ["0", "-1", "1", "3", "7", "33", "100000", "8192", "65536", "1000000000", "1.5", ""]
            )
            if key == "size":
                size = rng.choice([1, 8, 13, 31, 48, 8192, 100000])
            else:
                net_extra += f"\n{key}={val}"
        elif r < 0.9:  # sizes aimed at the limits: huge filters, kernels, strides, route indexes
            convs = [
                s
                for s in secs
                if s.get("_kind")
                in ("convolutional", "maxpool", "upsample", "route", "connected", "shortcut")
            ]
            if convs:
                s2 = rng.choice(convs)
                key = {
                    "convolutional": ["filters", "size", "stride", "groups", "pad", "padding"],
                    "maxpool": ["size", "stride", "padding"],
                    "upsample": ["stride", "scale"],
                    "route": ["layers", "groups", "group_id"],
                    "connected": ["output"],
                    "shortcut": ["from", "activation"],
                }[s2["_kind"]]
                s2[rng.choice(key)] = rng.choice(
                    [
                        "100000",
                        "65536",
                        "1000000000",
                        "4096",
                        "0",
                        "-1",
                        "-5",
                        "-100",
                        "31",
                        "2",
                        "3",
                        "-1,-1,-1,-1",
                        "5,-3",
                        "1" * 5000,
                        "1024",
                        "-2147483648",
                    ]
                )
        # else: the cfg as written (text and weights damage follow)
    try:
        text = df.cfg_text(secs, width=size, height=size, net_extra=net_extra.strip())
    except Exception:  # noqa: BLE001 - a section without its _kind: written by hand below
        text = "[net]\nwidth=8\nheight=8\nchannels=3\n[" + str(rng.random()) + "\n"
    weights = _darknet_weights(df, secs, size, version, rng.randrange(1000))
    if not weights:  # the cfg does not plan (or is too big): the original net's weights
        _, orig, _ = _darknet_seed(random.Random(rng.random()))
        weights = df.weights_bytes(orig, version)
    data = text.encode("utf-8")
    r = rng.random()
    if r < 0.08:  # text damage: bytes that are not UTF-8, a BOM, CRLF, a long line, no '='
        op = rng.randrange(6)
        if op == 0:
            data = data[: rng.randrange(len(data))] + b"\xff\xfe" + data
        elif op == 1:
            data = b"\xef\xbb\xbf" + data
        elif op == 2:
            data = data.replace(b"\n", b"\r\n")
        elif op == 3:
            data += b"[convolutional]\nfilters=" + b"9" * 100000 + b"\n"
        elif op == 4:
            data = data.replace(b"=", b" ", 1 + rng.randrange(3))
        else:
            data = b"[" * 1000 + data
    elif r < 0.13:
        data = data[: rng.randrange(len(data) + 1)]
    # the weights: header versions, truncated, extended, non-finite or negative values, missing
    w = bytearray(weights)
    r = rng.random()
    if r < 0.1:
        w[0:12] = struct.pack(
            "<iii",
            *rng.choice(
                [
                    (0, 1, 0),
                    (0, 2, 0),
                    (1000, 0, 0),
                    (-1, 0, 0),
                    (0, 1000, 0),
                    (0, 0, -1),
                    (2**31 - 1, 2**31 - 1, 0),
                    (1, 0, 0),
                    (0, 999, 0),
                ]
            ),
        )
    elif r < 0.2:
        w = w[: rng.choice([0, 3, 11, 12, 15, 16, 19, 20, len(w) - 1, len(w) - 4, len(w) // 2])]
    elif r < 0.27:
        w += b"\0" * rng.choice([1, 3, 4, 4096])
    elif r < 0.35 and len(w) > 24:
        for _ in range(rng.choice([1, 3])):
            at = 20 + 4 * rng.randrange((len(w) - 20) // 4)
            w[at : at + 4] = struct.pack("<f", rng.choice([math.nan, math.inf, -1.0, -1e30, 0.0]))
    elif r < 0.38:
        return data, None
    return data, bytes(w)


# -- entry points ----------------------------------------------------------------------------------
def mutant(kind: str, seed: int) -> tuple[str, bytes]:
    """(file suffix, bytes) of mutant ``seed`` of ``kind``: the same pair every time. For
    ``darknet`` the cfg (its weights: :func:`mutant_files`)."""
    rng = random.Random(f"{kind}:{seed}")
    if kind == "npz":
        return "npz", npz_mutant(rng)
    if kind == "onnx":
        return "onnx", onnx_mutant(rng)
    if kind == "image":
        return image_mutant(rng)
    if kind == "darknet":
        return "cfg", darknet_mutant(rng)[0]
    raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")


def mutant_files(kind: str, seed: int) -> list[tuple[str, bytes]]:
    """The files of mutant ``seed``: [(suffix, bytes)], the one to load first. A Darknet mutant
    is its cfg and (unless the mutation removed it) its ``.weights``, written under one stem."""
    if kind == "darknet":
        cfg, weights = darknet_mutant(random.Random(f"{kind}:{seed}"))
        return [("cfg", cfg)] + ([("weights", weights)] if weights is not None else [])
    return [mutant(kind, seed)]


def seed_files(folder: str) -> list[str]:
    """Valid seed inputs (models, ONNX files, images) for the coverage-guided fuzzers."""
    os.makedirs(folder, exist_ok=True)
    out = []

    def put(name, data):
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        out.append(path)

    for i in range(5):
        put(f"model{i}.npz", model_bytes(*seed_model(i)))
        put(f"model{i}.onnx", onnx_seed(np.random.default_rng(i), i).to_bytes(None))
    rng = random.Random(0)
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "PPM"):
        put(f"image.{fmt.lower()}", _pil_bytes(rng, fmt))
    return out


# -- head: the layout kinds of a detection head's decode, appended to the "shape" seed graph
# (pool is 3 x 10 x 10), and values aimed at their checks.
ISSUE14_SHAPE += [
    _layer("flat", "reshape", "pool", {"shape": [3, 1, 100]}),
    _layer("tr", "transpose", "flat", {"perm": [2, 1, 0]}),  # 100 x 1 x 3
    _layer("cat3", "concat", ["tr", "tr"], {"axis": 3}),  # 100 x 1 x 6
    _layer("sub", "add", ["cat3", "tr"], {"weights": [1.0, -0.5]}),
    _layer("anch", "affine", "sub", None, {"scale": [1, 1, 1, 6], "bias": [1, 100, 1, 1]}),
]
ISSUE14_KINDS += ["reshape", "transpose", "concat", "add"]
ISSUE14_ATTRS |= {
    "reshape": {"shape": [[3, 1, 99], [0, 1, 300], [-1, 1, 300], [10**9, 1, 1], [300], [1, 2]]},
    "transpose": {"perm": [[0, 0, 2], [0, 1, 3], [-1, 0, 1], [1, 0], [2, 1, 0, 3]]},
    "concat": {"axis": [0, 2, 3, 4, -1, 10**9]},
    "add": {"weights": [[1.0], [math.nan, 1.0], [math.inf, 0.0], [1.0, -1.0, 2.0], []]},
}
ISSUE14_PARAM_SHAPES["scale"] += [[1, 1, 1, 7], [1, 100, 1, 6], [2, 1, 1, 6]]
ISSUE14_PARAM_SHAPES["bias"] += [[1, 99, 1, 1], [1, 1, 2, 6]]


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(
            "usage: python tests/fuzz/mutate.py {npz|onnx|image|darknet} SEED PREFIX  "
            "(writes PREFIX.<suffix>; darknet: PREFIX.cfg and PREFIX.weights)"
        )
    for suffix, blob in mutant_files(sys.argv[1], int(sys.argv[2])):
        out = f"{sys.argv[3]}.{suffix}"
        with open(out, "wb") as f:
            f.write(blob)
        print(out)
