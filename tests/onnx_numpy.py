"""A direct float64 NumPy evaluation of the ONNX operators the test models use.

It runs an ``OnnxBuilder``'s nodes straight from the ONNX operator definitions, independent of the
importer (its reader, folding and mapping), so comparing it with the imported model run by
tests/npref.py checks the mapping end to end.
"""

from __future__ import annotations

import math

import numpy as np
from onnx_writer import OnnxBuilder


def _same_pads(size, k, s, d, lower):
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return (total - total // 2, total // 2) if lower else (total // 2, total - total // 2)


def _pads(attrs, hw, kernel, strides, dilations):
    """((top, bottom), (left, right))."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return tuple(
            _same_pads(hw[i], kernel[i], strides[i], dilations[i], auto == "SAME_LOWER")
            for i in range(2)
        )
    if auto == "VALID":
        return ((0, 0), (0, 0))
    p = attrs.get("pads", [0, 0, 0, 0])
    return ((p[0], p[2]), (p[1], p[3]))


def conv(x, w, b, attrs):
    s = attrs.get("strides", [1, 1])
    d = attrs.get("dilations", [1, 1])
    g = attrs.get("group", 1)
    kh, kw = w.shape[2:]
    (pt, pb), (pl, pr) = _pads(attrs, x.shape[2:], (kh, kw), s, d)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (xp.shape[2] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (xp.shape[3] - d[1] * (kw - 1) - 1) // s[1] + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    cin, cout = w.shape[1], w.shape[0] // g
    for gi in range(g):
        xs = xp[:, gi * cin : (gi + 1) * cin]
        ws = w[gi * cout : (gi + 1) * cout]
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * d[0], kx * d[1]
                patch = xs[
                    :, :, y0 : y0 + s[0] * (oh - 1) + 1 : s[0], x0 : x0 + s[1] * (ow - 1) + 1 : s[1]
                ]
                out[:, gi * cout : (gi + 1) * cout] += np.einsum(
                    "nchw,oc->nohw", patch, ws[:, :, ky, kx]
                )
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def pool(x, attrs, mode):
    k = attrs["kernel_shape"]
    s = attrs.get("strides", [1, 1])
    (pt, pb), (pl, pr) = _pads(attrs, x.shape[2:], k, s, (1, 1))
    h, w = x.shape[2:]
    sizes = []
    for size, before, after, kk, ss in ((h, pt, pb, k[0], s[0]), (w, pl, pr, k[1], s[1])):
        span = size + before + after - kk
        n = (math.ceil(span / ss) if attrs.get("ceil_mode", 0) else span // ss) + 1
        if attrs.get("ceil_mode", 0) and (n - 1) * ss >= size + before:
            n -= 1  # ONNX drops a window that starts in the end padding
        sizes.append(n)
    oh, ow = sizes
    # Extra room on the right/bottom for ceil_mode windows that run past the padded input.
    extra_h = max(0, (oh - 1) * s[0] + k[0] - (h + pt + pb))
    extra_w = max(0, (ow - 1) * s[1] + k[1] - (w + pl + pr))
    widths = ((0, 0), (0, 0), (pt, pb + extra_h), (pl, pr + extra_w))
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, widths, constant_values=fill)
    inside = np.pad(np.ones((h, w)), widths[2:])  # real input elements
    padded = np.pad(np.ones((h + pt + pb, w + pl + pr)), ((0, extra_h), (0, extra_w)))
    out = np.zeros(x.shape[:2] + (oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            win = np.s_[oy * s[0] : oy * s[0] + k[0], ox * s[1] : ox * s[1] + k[1]]
            region = xp[:, :, win[0], win[1]]
            if mode == "max":
                out[:, :, oy, ox] = region.max(axis=(2, 3))
            else:
                count = (padded if attrs.get("count_include_pad", 0) else inside)[win].sum()
                out[:, :, oy, ox] = region.sum(axis=(2, 3)) / count
    return out


def lrn(x, attrs):
    size = attrs["size"]
    alpha, beta, bias = attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    c = x.shape[1]
    square_sum = np.zeros_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + math.ceil((size - 1) / 2))
        square_sum[:, ch] = (x[:, lo : hi + 1] ** 2).sum(axis=1)
    return x / (bias + alpha / size * square_sum) ** beta


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _axes(node, ins, opset):
    if len(ins) > 1 and ins[1] is not None:
        return [int(a) for a in ins[1]]
    return node.attrs.get("axes")


def run_node(node, ins, opset):
    a = node.attrs
    op = node.op
    x = ins[0] if ins else None
    if op == "Conv":
        return conv(x, ins[1], ins[2] if len(ins) > 2 else None, a)
    if op == "Relu":
        return np.maximum(x, 0)
    if op in ("MaxPool", "AveragePool"):
        return pool(x, a, "max" if op == "MaxPool" else "avg")
    if op == "GlobalAveragePool":
        return x.mean(axis=(2, 3), keepdims=True)
    if op == "ReduceMean":
        axes = tuple(_axes(node, ins, opset))
        return x.mean(axis=axes, keepdims=bool(a.get("keepdims", 1)))
    if op == "LRN":
        return lrn(x, a)
    if op == "BatchNormalization":
        scale, bias, mean, var = (v.reshape(1, -1, *([1] * (x.ndim - 2))) for v in ins[1:5])
        return (x - mean) / np.sqrt(var + a.get("epsilon", 1e-5)) * scale + bias
    if op == "Gemm":
        am = x.T if a.get("transA", 0) else x
        bm = ins[1].T if a.get("transB", 0) else ins[1]
        y = a.get("alpha", 1.0) * am @ bm
        return y + a.get("beta", 1.0) * ins[2] if len(ins) > 2 else y
    if op == "MatMul":
        return x @ ins[1]
    if op == "Flatten":
        axis = a.get("axis", 1)
        return x.reshape(int(np.prod(x.shape[:axis])), -1)
    if op == "Reshape":
        target = [x.shape[i] if t == 0 else int(t) for i, t in enumerate(ins[1])]
        return x.reshape(target)
    if op == "Squeeze":
        axes = _axes(node, ins, opset)
        return np.squeeze(x, axis=None if axes is None else tuple(axes))
    if op == "Unsqueeze":
        out = x
        for ax in sorted(
            int(v) % (x.ndim + len(_axes(node, ins, opset))) for v in _axes(node, ins, opset)
        ):
            out = np.expand_dims(out, ax)
        return out
    if op == "Transpose":
        return np.transpose(x, a.get("perm"))
    if op == "Softmax":
        return softmax(x, a.get("axis", -1 if opset >= 13 else 1))
    if op in ("Dropout", "Identity"):
        return x
    if op == "Cast":
        return x.astype(np.float64) if a["to"] in (1, 10, 11) else x.astype(np.int64)
    if op == "Concat":
        return np.concatenate(ins, axis=a.get("axis", 0))
    if op in ("Add", "Sub", "Mul", "Div"):
        fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        if op == "Div" and x.dtype.kind == "i":
            return x // ins[1]
        return fn(x, ins[1])
    if op == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if op == "Tanh":
        return np.tanh(x)
    if op == "Pow":
        return np.power(x, ins[1])
    if op == "Split":  # a list: one array per output
        sizes = ins[1] if len(ins) > 1 and ins[1] is not None else a["split"]
        return np.split(x, np.cumsum(sizes)[:-1], axis=a.get("axis", 0))
    if op == "Expand":
        return x * np.ones([int(d) for d in ins[1]])
    if op == "ScatterND":
        out = x.copy()
        idx = ins[1].reshape(-1, ins[1].shape[-1])
        upd = ins[2].reshape((len(idx),) + x.shape[ins[1].shape[-1] :])
        for i, where in enumerate(idx):
            out[tuple(int(v) for v in where)] = upd[i]
        return out
    if op == "Shape":
        return np.array(x.shape, dtype=np.int64)
    if op == "Gather":
        return np.take(x, ins[1], axis=a.get("axis", 0))
    if op == "Slice":
        if len(ins) == 1:  # opset < 10: attributes
            starts, ends = a["starts"], a["ends"]
            axes = a.get("axes", range(len(starts)))
        else:
            starts, ends = ins[1], ins[2]
            axes = ins[3] if len(ins) > 3 else range(len(starts))
        index = [slice(None)] * x.ndim
        for st, en, ax in zip(starts, ends, axes):
            index[int(ax)] = slice(int(st), int(en))
        return x[tuple(index)]
    if op == "Constant":
        if "value" in a:
            return a["value"]
        return np.array(
            a.get("value_floats", a.get("value_ints", a.get("value_float", a.get("value_int"))))
        )
    raise NotImplementedError(op)


def run(builder: OnnxBuilder, x: np.ndarray) -> dict[str, np.ndarray]:
    """Evaluate the builder's graph on ``x``; returns every tensor (float64 / int64)."""
    values = {}
    for name, array in builder.arrays().items():
        values[name] = (
            array.astype(np.float64) if array.dtype.kind == "f" else array.astype(np.int64)
        )
    values[builder.inputs[0][0]] = np.asarray(x, dtype=np.float64)
    for node in builder.nodes:
        ins = [values[n] if n else None for n in node.inputs]
        out = run_node(node, ins, builder.opset)
        for name, value in zip(node.outputs, out if isinstance(out, list) else [out]):
            values[name] = value.astype(np.float64) if value.dtype.kind == "f" else value
    return values
