"""A plain NumPy float64 reference of docs/FORMAT.md: forward pass, switches and projections.

This is the definition the engine is tested against, so it favours the obvious over the fast: every
layer is written out from the format's formulas (explicit window scans, scatter-adds, the transposed
convolution as the literal adjoint of the forward loop).  Tensors are float64 NCHW or NC.
"""

from __future__ import annotations

import math

import numpy as np

RULES = ("deconvnet", "guided", "backprop")


# ---------------------------------------------------------------------------------------------
# Attributes


def _pair(v, default):
    if v is None:
        v = default
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def _padding(v):
    """[t, l, b, r]; a two-element [ph, pw] means symmetric padding."""
    if v is None:
        return (0, 0, 0, 0)
    if isinstance(v, int):
        return (v, v, v, v)
    if len(v) == 2:
        return (int(v[0]), int(v[1]), int(v[0]), int(v[1]))
    return tuple(int(p) for p in v)


def out_size(size, k, s, pad_before, pad_after, dilation=1, ceil_mode=False):
    """Output length along one axis, with FORMAT.md's ceil_mode rule."""
    span = size + pad_before + pad_after - dilation * (k - 1) - 1
    n = (-(-span // s) if ceil_mode else span // s) + 1
    # A window that would start in the bottom/right padding is dropped.
    if ceil_mode and (n - 1) * s >= size + pad_before:
        n -= 1
    return n


def _conv_attrs(layer, w):
    a = layer.get("attrs", {})
    return dict(
        kernel=_pair(a.get("kernel_size"), w.shape[2:]),
        stride=_pair(a.get("stride"), 1),
        pad=_padding(a.get("padding")),
        dil=_pair(a.get("dilation"), 1),
        groups=int(a.get("groups", 1)),
    )


def _pool_attrs(layer):
    a = layer.get("attrs", {})
    k = _pair(a["kernel_size"], None)
    return dict(
        kernel=k,
        stride=_pair(a.get("stride"), k),
        pad=_padding(a.get("padding")),
        ceil=bool(a.get("ceil_mode", False)),
        include_pad=bool(a.get("count_include_pad", False)),
    )


# ---------------------------------------------------------------------------------------------
# conv2d and its transpose


def _conv_taps(x_shape, w_shape, at):
    """Yield (ky, kx, row slice, col slice) into the padded input for every filter tap."""
    _, _, h, wd = x_shape
    kh, kw = w_shape[2:]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = at["stride"], at["dil"], at["pad"]
    oh = out_size(h, kh, sh, pt, pb, dh)
    ow = out_size(wd, kw, sw, pl, pr, dw)
    for ky in range(kh):
        for kx in range(kw):
            rows = slice(ky * dh, ky * dh + sh * (oh - 1) + 1, sh)
            cols = slice(kx * dw, kx * dw + sw * (ow - 1) + 1, sw)
            yield ky, kx, rows, cols


def _pad(x, pad):
    pt, pl, pb, pr = pad
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def conv2d(x, w, b, at):
    n, c, h, wd = x.shape
    oc, icg = w.shape[:2]
    g = at["groups"]
    ocg = oc // g
    (pt, pl, pb, pr), (sh, sw), (dh, dw) = at["pad"], at["stride"], at["dil"]
    oh = out_size(h, w.shape[2], sh, pt, pb, dh)
    ow = out_size(wd, w.shape[3], sw, pl, pr, dw)
    xp = _pad(x, at["pad"])
    y = np.zeros((n, oc, oh, ow))
    for ky, kx, rows, cols in _conv_taps(x.shape, w.shape, at):
        patch = xp[:, :, rows, cols]
        for gi in range(g):
            ci, co = slice(gi * icg, (gi + 1) * icg), slice(gi * ocg, (gi + 1) * ocg)
            y[:, co] += np.einsum("nchw,oc->nohw", patch[:, ci], w[co, :, ky, kx])
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_transpose(g_out, x_shape, w, at):
    """The exact adjoint of conv2d's loop above: every tap scatters back where it gathered from."""
    oc, icg = w.shape[:2]
    groups = at["groups"]
    ocg = oc // groups
    pt, pl, pb, pr = at["pad"]
    n, c, h, wd = x_shape
    gp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    for ky, kx, rows, cols in _conv_taps(x_shape, w.shape, at):
        for gi in range(groups):
            ci, co = slice(gi * icg, (gi + 1) * icg), slice(gi * ocg, (gi + 1) * ocg)
            gp[:, ci, rows, cols] += np.einsum("nohw,oc->nchw", g_out[:, co], w[co, :, ky, kx])
    return gp[:, :, pt : pt + h, pl : pl + wd]


# ---------------------------------------------------------------------------------------------
# Pools


def _windows(h, w, at):
    """Yield (oy, ox, row range, col range) of every pooling window, clipped to the input."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = at["kernel"], at["stride"], at["pad"]
    oh = out_size(h, kh, sh, pt, pb, 1, at["ceil"])
    ow = out_size(w, kw, sw, pl, pr, 1, at["ceil"])
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = oy * sh - pt, ox * sw - pl
            yield oy, ox, (y0, y0 + kh), (x0, x0 + kw)


def pool_out_shape(h, w, at):
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = at["kernel"], at["stride"], at["pad"]
    return (out_size(h, kh, sh, pt, pb, 1, at["ceil"]), out_size(w, kw, sw, pl, pr, 1, at["ceil"]))


def max_pool2d(x, at):
    """Returns (y, switches). Scans each window in row-major order; a later element wins only if it
    is strictly greater, so ties go to the first index.  Padding is never a candidate."""
    n, c, h, w = x.shape
    oh, ow = pool_out_shape(h, w, at)
    y = np.full((n, c, oh, ow), -np.inf)
    sw = np.full((n, c, oh, ow), -1, dtype=np.int64)
    for oy, ox, (y0, y1), (x0, x1) in _windows(h, w, at):
        for iy in range(max(y0, 0), min(y1, h)):
            for ix in range(max(x0, 0), min(x1, w)):
                v = x[:, :, iy, ix]
                better = (v > y[:, :, oy, ox]) | (sw[:, :, oy, ox] < 0)
                y[:, :, oy, ox] = np.where(better, v, y[:, :, oy, ox])
                sw[:, :, oy, ox] = np.where(better, iy * w + ix, sw[:, :, oy, ox])
    if (sw < 0).any():
        raise ValueError("a max-pool window lies entirely in the padding")
    return y, sw.astype(np.int32)


def max_unpool2d(g_out, switches, x_shape):
    """Scatter-add through the switches: overlapping windows that share a winner sum."""
    n, c, h, w = x_shape
    g = np.zeros((n * c, h * w))
    rows = np.repeat(np.arange(n * c), switches[0, 0].size)
    np.add.at(g, (rows, switches.reshape(-1)), g_out.reshape(-1))
    return g.reshape(x_shape)


def _avg_divisor(h, w, at, ys, xs):
    (y0, y1), (x0, x1) = ys, xs
    if at["include_pad"]:
        pt, pl, pb, pr = at["pad"]
        # Elements of the window inside the padded input (a ceil_mode window may run past it).
        return (min(y1, h + pb) - max(y0, -pt)) * (min(x1, w + pr) - max(x0, -pl))
    return (min(y1, h) - max(y0, 0)) * (min(x1, w) - max(x0, 0))


def avg_pool2d(x, at):
    n, c, h, w = x.shape
    oh, ow = pool_out_shape(h, w, at)
    y = np.zeros((n, c, oh, ow))
    for oy, ox, ys, xs in _windows(h, w, at):
        win = x[:, :, max(ys[0], 0) : min(ys[1], h), max(xs[0], 0) : min(xs[1], w)]
        y[:, :, oy, ox] = win.sum(axis=(2, 3)) / _avg_divisor(h, w, at, ys, xs)
    return y


def avg_pool2d_transpose(g_out, x_shape, at):
    n, c, h, w = x_shape
    g = np.zeros(x_shape)
    for oy, ox, ys, xs in _windows(h, w, at):
        share = g_out[:, :, oy, ox] / _avg_divisor(h, w, at, ys, xs)
        g[:, :, max(ys[0], 0) : min(ys[1], h), max(xs[0], 0) : min(xs[1], w)] += share[
            :, :, None, None
        ]
    return g


# ---------------------------------------------------------------------------------------------
# LRN (across channels)


def _lrn_window(c, size, channels):
    lo, hi = (size - 1) // 2, math.ceil((size - 1) / 2)
    return max(0, c - lo), min(channels, c + hi + 1)


def _lrn_denominator(x, a):
    """d_c = bias + alpha/size * sum_{j in window(c)} x_j^2."""
    sq = x * x
    d = np.empty_like(x)
    for c in range(x.shape[1]):
        j0, j1 = _lrn_window(c, a["size"], x.shape[1])
        d[:, c] = a["bias"] + a["alpha"] / a["size"] * sq[:, j0:j1].sum(axis=1)
    return d


def lrn(x, a):
    return x / _lrn_denominator(x, a) ** a["beta"]


def lrn_transpose(g_out, x, a):
    """Gradient of y_c = x_c d_c^-beta:  g_k = g_k d_k^-beta
    - 2 alpha beta / size * x_k * sum_{c: k in window(c)} g_c x_c d_c^(-beta-1)."""
    d = _lrn_denominator(x, a)
    t = g_out * x * d ** (-a["beta"] - 1)
    g = g_out * d ** (-a["beta"])
    for c in range(x.shape[1]):
        j0, j1 = _lrn_window(c, a["size"], x.shape[1])
        g[:, j0:j1] -= 2 * a["alpha"] * a["beta"] / a["size"] * x[:, j0:j1] * t[:, c : c + 1]
    return g


def _lrn_attrs(layer):
    a = layer.get("attrs", {})
    return dict(
        size=int(a.get("size", 5)),
        alpha=float(a.get("alpha", 1e-4)),
        beta=float(a.get("beta", 0.75)),
        bias=float(a.get("bias", 1.0)),
    )


# ---------------------------------------------------------------------------------------------
# Whole graph


def _bcast(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _param(params, layer, name):
    p = params.get(f"{layer['name']}/{name}")
    return None if p is None else np.asarray(p, dtype=np.float64)


def forward(graph, params, x):
    """Returns (acts, switches): acts maps the input name and every layer to its float64 output,
    switches maps every max_pool2d layer to its int32 switches."""
    acts = {graph["input"]["name"]: np.asarray(x, dtype=np.float64)}
    switches = {}
    for layer in graph["layers"]:
        kind, name = layer["kind"], layer["name"]
        ins = [acts[i] for i in layer["inputs"]]
        x0 = ins[0]
        if kind == "conv2d":
            w = _param(params, layer, "weight")
            y = conv2d(x0, w, _param(params, layer, "bias"), _conv_attrs(layer, w))
        elif kind == "relu":
            y = np.maximum(x0, 0.0)
        elif kind == "max_pool2d":
            y, switches[name] = max_pool2d(x0, _pool_attrs(layer))
        elif kind == "avg_pool2d":
            y = avg_pool2d(x0, _pool_attrs(layer))
        elif kind == "global_avg_pool":
            y = x0.mean(axis=(2, 3), keepdims=True)
        elif kind == "lrn":
            y = lrn(x0, _lrn_attrs(layer))
        elif kind == "batch_norm":
            eps = float(layer.get("attrs", {}).get("epsilon", 1e-5))
            p = {
                k: _bcast(_param(params, layer, k), x0.ndim)
                for k in ("scale", "bias", "mean", "var")
            }
            y = (x0 - p["mean"]) / np.sqrt(p["var"] + eps) * p["scale"] + p["bias"]
        elif kind == "linear":
            y = x0.reshape(len(x0), -1) @ _param(params, layer, "weight").T
            b = _param(params, layer, "bias")
            if b is not None:
                y = y + b
        elif kind == "flatten":
            y = x0.reshape(len(x0), -1)
        elif kind == "dropout":
            y = x0.copy()
        elif kind == "softmax":
            e = np.exp(x0 - x0.max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        elif kind in LAYOUT_KINDS:
            y = layout_forward(layer, ins)
        elif kind in SHAPE_KINDS:
            y = shape_forward(layer, params, ins)
        elif kind in ACTIVATIONS:
            y = activation(layer, params, x0)
        elif kind == "conv_transpose2d":
            w = _param(params, layer, "weight")
            y = conv_transpose2d(x0, w, _param(params, layer, "bias"), _convt_attrs(layer, w))
        elif kind == "layer_norm":
            y = layer_norm(x0, _param(params, layer, "scale"), _param(params, layer, "bias"), layer)
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        acts[name] = y
    return acts, switches


def start_signal(act, channel, at):
    """The start signal in a layer of output `act`: zero except the chosen channel's
    "max" (strongest activation per sample, value kept, ties -> first in row-major order),
    "map" (the whole feature map) or (y, x) (one position, value kept).
    An ndarray `at` is the start signal itself (channel ignored)."""
    if isinstance(at, np.ndarray):
        if at.shape != act.shape:
            raise ValueError(f"start signal shape {at.shape} != layer output {act.shape}")
        return at.astype(np.float64)
    s = np.zeros_like(act, dtype=np.float64)
    plane = act[:, channel].reshape(len(act), -1)
    if isinstance(at, str) and at == "map":
        s[:, channel] = act[:, channel]
        return s
    if isinstance(at, str) and at == "max":
        idx = plane.argmax(axis=1)  # np.argmax returns the first maximum
    else:
        if act.ndim != 4:
            raise ValueError("(y, x) needs a rank-4 layer")
        y, x = at
        idx = np.full(len(act), y * act.shape[3] + x)
    flat = s[:, channel].reshape(len(act), -1)
    flat[np.arange(len(act)), idx] = plane[np.arange(len(act)), idx]
    s[:, channel] = flat.reshape(s[:, channel].shape)
    return s


def _relu_rule(g, x, rule):
    if rule == "deconvnet":
        return np.maximum(g, 0.0)
    if rule == "guided":
        return np.maximum(g, 0.0) * (x > 0)
    if rule == "backprop":
        return g * (x > 0)
    raise ValueError(f"unknown rule {rule!r}")


def _layer_back(layer, params, acts, switches, g, rule):
    """Signals for each of the layer's inputs, in order."""
    kind = layer["kind"]
    x0 = acts[layer["inputs"][0]]
    if kind == "conv2d":
        w = _param(params, layer, "weight")
        return [conv2d_transpose(g, x0.shape, w, _conv_attrs(layer, w))]
    if kind == "relu":
        return [_relu_rule(g, x0, rule)]
    if kind == "max_pool2d":
        return [max_unpool2d(g, switches[layer["name"]], x0.shape)]
    if kind == "avg_pool2d":
        return [avg_pool2d_transpose(g, x0.shape, _pool_attrs(layer))]
    if kind == "global_avg_pool":
        return [
            np.broadcast_to(g.reshape(g.shape[:2] + (1, 1)), x0.shape) / (x0.shape[2] * x0.shape[3])
        ]
    if kind == "lrn":
        return [lrn_transpose(g, x0, _lrn_attrs(layer))]
    if kind == "batch_norm":
        eps = float(layer.get("attrs", {}).get("epsilon", 1e-5))
        k = _param(params, layer, "scale") / np.sqrt(_param(params, layer, "var") + eps)
        return [g * _bcast(k, g.ndim)]
    if kind == "linear":
        return [(g @ _param(params, layer, "weight")).reshape(x0.shape)]
    if kind in ("flatten", "dropout"):
        return [g.reshape(x0.shape)]
    if kind == "softmax":
        y = acts[layer["name"]]
        return [y * (g - (y * g).sum(axis=1, keepdims=True))]
    if kind in LAYOUT_KINDS:
        return layout_backward(layer, [acts[i] for i in layer["inputs"]], g)
    if kind in SHAPE_KINDS:
        return shape_backward(layer, params, [acts[i] for i in layer["inputs"]], g)
    if kind in ACTIVATIONS:
        return [activation_back(layer, params, x0, g, rule)]
    if kind == "conv_transpose2d":
        w = _param(params, layer, "weight")
        return [conv_transpose2d_back(g, x0.shape, w, _convt_attrs(layer, w))]
    if kind == "layer_norm":
        return [layer_norm_back(g, x0, _param(params, layer, "scale"), layer)]
    raise ValueError(f"unknown layer kind {kind!r}")


def project(graph, params, acts, switches, layer, start, rule):
    """Sends `start` (the signal at `layer`'s output) down to the graph input; float64.
    Signals reaching a tensor from several consumers are summed."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}")
    names = [lay["name"] for lay in graph["layers"]]
    signals = {layer: np.asarray(start, dtype=np.float64)}
    for lay in reversed(graph["layers"][: names.index(layer) + 1]):
        g = signals.pop(lay["name"], None)
        if g is None:  # this layer does not feed the projected one
            continue
        for name, gi in zip(lay["inputs"], _layer_back(lay, params, acts, switches, g, rule)):
            signals[name] = signals[name] + gi if name in signals else np.array(gi)
    inp = graph["input"]["name"]
    return signals.get(inp, np.zeros_like(acts[inp]))


def assert_close(got, ref, rtol=1e-4, atol_scale=1e-5, err_msg=""):
    """The suite's comparison of the float32 engine against this float64 reference."""
    ref = np.asarray(ref, dtype=np.float64)
    assert np.shape(got) == ref.shape, f"{err_msg} shape {np.shape(got)} != {ref.shape}"
    atol = atol_scale * max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), ref, rtol=rtol, atol=atol, err_msg=err_msg
    )


# ---------------------------------------------------------------------------------------------
# mul, affine, upsample, slice, pad, channel_shuffle. The spatial ones are
# written as matrices along each axis (out = A_h x A_w^T), so that going down is literally the
# transpose.

SHAPE_KINDS = ("mul", "affine", "upsample", "slice", "pad", "channel_shuffle")


def upsample_matrix(n_in, s, bilinear, align_corners):
    """(n_in * s, n_in): nearest out[o] = in[o // s]; bilinear by PyTorch's source coordinate
    (area_pixel_compute_source_index) with its two taps and weights."""
    n_out = n_in * s
    a = np.zeros((n_out, n_in))
    for o in range(n_out):
        if not bilinear:
            a[o, o // s] = 1.0
            continue
        if align_corners:
            src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((o + 0.5) / s - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        a[o, i0] += 1.0 - lam
        a[o, i1] += lam
    return a


def pad_matrix(n_in, before, after, reflect):
    """(n_in + before + after, n_in): out[o] = in[o - before], reflected (no edge repeat) or
    nothing (constant padding) outside."""
    a = np.zeros((n_in + before + after, n_in))
    for o in range(a.shape[0]):
        i = o - before
        if reflect:
            i = -i if i < 0 else (2 * (n_in - 1) - i if i >= n_in else i)
        if 0 <= i < n_in:
            a[o, i] = 1.0
    return a


def _values(v, n):
    """An attribute of 1..n values as n: one value repeats; for 4 (padding) two mean [ph, pw]."""
    v = [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
    if len(v) == 1:
        return v * n
    return v * 2 if n == 4 and len(v) == 2 else v


def _shape_attrs(layer, x_shape):
    a = layer.get("attrs", {})
    kind = layer["kind"]
    if kind == "upsample":
        sh, sw = _values(a["scale"], 2)
        bil, ac = bool(a.get("bilinear", 0)), bool(a.get("align_corners", 0))
        return (
            upsample_matrix(x_shape[2], sh, bil, ac),
            upsample_matrix(x_shape[3], sw, bil, ac),
        )
    if kind == "pad":
        t, left, b, r = _values(a["padding"], 4)
        refl = bool(a.get("reflect", 0))
        return pad_matrix(x_shape[2], t, b, refl), pad_matrix(x_shape[3], left, r, refl)
    raise ValueError(kind)


def _channel_shuffle(x, groups):
    n, c = x.shape[:2]
    return x.reshape((n, groups, c // groups) + x.shape[2:]).swapaxes(1, 2).reshape(x.shape)


def _unbroadcast(g, shape):
    """g summed over the axes where `shape` is 1 (and g is not): the gradient of a broadcast."""
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, g.shape)) if a == 1 and b != 1)
    return g.sum(axis=axes, keepdims=True)


def shape_forward(layer, params, ins):
    kind, a, x = layer["kind"], layer.get("attrs", {}), ins[0]
    if kind == "mul":
        return ins[0] * ins[1]
    if kind == "affine":
        scale, bias = _param(params, layer, "scale"), _param(params, layer, "bias")
        y = x * _affine_param(scale, x.ndim) if scale is not None else x.copy()
        return y + _affine_param(bias, x.ndim) if bias is not None else y
    if kind == "slice":
        index = [slice(None)] * x.ndim
        index[int(a.get("axis", 1))] = slice(int(a["start"]), int(a["end"]))
        return x[tuple(index)].copy()
    if kind == "channel_shuffle":
        return _channel_shuffle(x, int(a["groups"]))
    ah, aw = _shape_attrs(layer, x.shape)
    y = np.einsum("oh,nchw,pw->ncop", ah, x, aw)
    if kind == "pad" and not a.get("reflect", 0):
        inside = np.einsum("oh,pw->op", ah, aw)  # 1 inside the input, 0 in the padding
        y = y + float(a.get("value", 0.0)) * (1.0 - inside)
    return y


def shape_backward(layer, params, ins, g):
    kind, a = layer["kind"], layer.get("attrs", {})
    if kind == "mul":
        return [_unbroadcast(g * ins[1], ins[0].shape), _unbroadcast(g * ins[0], ins[1].shape)]
    if kind == "affine":
        scale = _param(params, layer, "scale")
        return [g * _affine_param(scale, g.ndim) if scale is not None else g.copy()]
    if kind == "slice":
        gin = np.zeros_like(ins[0])
        index = [slice(None)] * gin.ndim
        index[int(a.get("axis", 1))] = slice(int(a["start"]), int(a["end"]))
        gin[tuple(index)] = g
        return [gin]
    if kind == "channel_shuffle":
        groups = int(a["groups"])
        return [_channel_shuffle(g, g.shape[1] // groups)]  # the inverse permutation
    ah, aw = _shape_attrs(layer, ins[0].shape)
    return [np.einsum("oh,ncop,pw->nchw", ah, g, aw)]


# The element-wise activations: f, f' (at a kink, the x <= 0 side's for the ReLU-like kinds; 0 at
# clip's and hardsigmoid's ends; hardswish's middle piece only strictly inside (-3, 3), as torch
# 2.13) and whether the kind rectifies (the three rules differ). a: the layer's attributes with
# defaults filled in, s: the per-channel slope broadcast to x (prelu).


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _erf(x):
    return np.vectorize(math.erf, otypes=[float])(x)


_GELU_K = math.sqrt(2.0 / math.pi)


def _gelu_tanh_t(x):
    return np.tanh(_GELU_K * (x + 0.044715 * x**3))


def _mish_t(x):
    return np.tanh(np.log1p(np.exp(x)))


ACTIVATIONS = {
    # kind: (f(x, a, slope), f'(x, a, slope), attribute defaults)
    "leaky_relu": (
        lambda x, a, s: np.where(x > 0, x, a["alpha"] * x),
        lambda x, a, s: np.where(x > 0, 1.0, a["alpha"]),
        {"alpha": 0.01},
    ),
    "prelu": (
        lambda x, a, s: np.where(x > 0, x, s * x),
        lambda x, a, s: np.where(x > 0, 1.0, s),
        {},
    ),
    "clip": (
        lambda x, a, s: np.minimum(np.maximum(x, a["min"]), a["max"]),
        lambda x, a, s: ((x > a["min"]) & (x < a["max"])).astype(float),
        {"min": -3.4e38, "max": 3.4e38},
    ),
    "sigmoid": (
        lambda x, a, s: _sigmoid(x),
        lambda x, a, s: _sigmoid(x) * (1 - _sigmoid(x)),
        {},
    ),
    "tanh": (lambda x, a, s: np.tanh(x), lambda x, a, s: 1 - np.tanh(x) ** 2, {}),
    "silu": (
        lambda x, a, s: x * _sigmoid(x),
        lambda x, a, s: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
        {},
    ),
    "hardsigmoid": (
        lambda x, a, s: np.clip(a["alpha"] * x + a["beta"], 0.0, 1.0),
        lambda x, a, s: np.where(
            (a["alpha"] * x + a["beta"] > 0) & (a["alpha"] * x + a["beta"] < 1), a["alpha"], 0.0
        ),
        {"alpha": 0.2, "beta": 0.5},
    ),
    "hardswish": (
        lambda x, a, s: x * np.clip(x / 6 + 0.5, 0.0, 1.0),
        lambda x, a, s: np.where(x <= -3, 0.0, np.where(x < 3, x / 3 + 0.5, 1.0)),
        {},
    ),
    "mish": (
        lambda x, a, s: x * _mish_t(x),
        lambda x, a, s: _mish_t(x) + x * _sigmoid(x) * (1 - _mish_t(x) ** 2),
        {},
    ),
    "elu": (
        lambda x, a, s: np.where(x > 0, x, a["alpha"] * np.expm1(np.minimum(x, 0))),
        lambda x, a, s: np.where(x > 0, 1.0, a["alpha"] * np.exp(np.minimum(x, 0))),
        {"alpha": 1.0},
    ),
    "gelu": (
        lambda x, a, s: (
            0.5 * x * (1 + _gelu_tanh_t(x)) if a["tanh"] else 0.5 * x * (1 + _erf(x / math.sqrt(2)))
        ),
        lambda x, a, s: (
            0.5 * (1 + _gelu_tanh_t(x))
            + 0.5 * x * (1 - _gelu_tanh_t(x) ** 2) * _GELU_K * (1 + 3 * 0.044715 * x**2)
            if a["tanh"]
            else 0.5 * (1 + _erf(x / math.sqrt(2)))
            + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        ),
        {"tanh": 0},
    ),
}
# Kinds whose three rules differ (docs/PROJECTION.md); clip only with min == 0 (ReLU6).
RECTIFYING = {"relu", "leaky_relu", "prelu", "silu", "hardswish", "mish", "elu", "gelu"}


def _act_args(layer, params, x):
    f, d, defaults = ACTIVATIONS[layer["kind"]]
    given = layer.get("attrs", {})
    a = {
        k: float(given[k][0] if isinstance(given.get(k), list) else given.get(k, v))
        for k, v in defaults.items()
    }
    slope = _param(params, layer, "slope")
    s = None if slope is None else _bcast(slope, x.ndim)
    return f, d, a, s


def rectifies(layer):
    """Whether the rules differ at this layer."""
    if layer["kind"] == "clip":
        m = layer.get("attrs", {}).get("min", -3.4e38)
        return float(m[0] if isinstance(m, list) else m) == 0.0
    return layer["kind"] in RECTIFYING


def activation(layer, params, x):
    f, _, a, s = _act_args(layer, params, x)
    return f(x, a, s)


def activation_back(layer, params, x, g, rule):
    """deconvnet relu(g), guided relu(g) * f'(x), backprop g * f'(x) at a rectifying layer;
    g * f'(x) under every rule at the others."""
    _, d, a, s = _act_args(layer, params, x)
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}")
    if not rectifies(layer) or rule == "backprop":
        return g * d(x, a, s)
    if rule == "deconvnet":
        return np.maximum(g, 0.0)
    return np.maximum(g, 0.0) * d(x, a, s)


def _convt_attrs(layer, w):
    at = _conv_attrs(layer, w)
    at["out_pad"] = _pair(layer.get("attrs", {}).get("output_padding"), 0)
    return at


def convt_out_size(size, k, s, pad_before, pad_after, dilation, out_pad):
    """torch's ConvTranspose2d output length along one axis."""
    return (size - 1) * s - pad_before - pad_after + dilation * (k - 1) + out_pad + 1


def _convt_geometry(x_shape, w, at):
    n, c, h, wd = x_shape
    kh, kw = w.shape[2:]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = at["stride"], at["dil"], at["pad"]
    oh = convt_out_size(h, kh, sh, pt, pb, dh, at["out_pad"][0])
    ow = convt_out_size(wd, kw, sw, pl, pr, dw, at["out_pad"][1])
    return oh, ow


def _convt_taps(x_shape, w, at):
    """Yield (ky, kx, row slice, col slice): where input (i, j) lands for tap (ky, kx), in the
    output before its top/left padding is cropped: row i*sh + ky*dh."""
    _, _, h, wd = x_shape
    kh, kw = w.shape[2:]
    (sh, sw), (dh, dw) = at["stride"], at["dil"]
    for ky in range(kh):
        for kx in range(kw):
            yield (
                ky,
                kx,
                slice(ky * dh, ky * dh + sh * (h - 1) + 1, sh),
                slice(kx * dw, kx * dw + sw * (wd - 1) + 1, sw),
            )


def conv_transpose2d(x, w, b, at):
    """Every input pixel scatters its weighted kernel: out[i*s - pad + k*d] += x[i] * w[k]."""
    n, c, h, wd = x.shape
    groups = at["groups"]
    cg, ocg = w.shape[0] // groups, w.shape[1]
    pt, pl, pb, pr = at["pad"]
    oh, ow = _convt_geometry(x.shape, w, at)
    full = np.zeros((n, ocg * groups, oh + pt + pb, ow + pl + pr))
    for ky, kx, rows, cols in _convt_taps(x.shape, w, at):
        for gi in range(groups):
            ci, co = slice(gi * cg, (gi + 1) * cg), slice(gi * ocg, (gi + 1) * ocg)
            full[:, co, rows, cols] += np.einsum("nchw,co->nohw", x[:, ci], w[ci, :, ky, kx])
    y = full[:, :, pt : pt + oh, pl : pl + ow].copy()
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv_transpose2d_back(g_out, x_shape, w, at):
    """The exact adjoint of the scatter above: every tap gathers back where it scattered to."""
    groups = at["groups"]
    cg, ocg = w.shape[0] // groups, w.shape[1]
    pt, pl, pb, pr = at["pad"]
    gp = np.pad(g_out, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    g = np.zeros(x_shape)
    for ky, kx, rows, cols in _convt_taps(x_shape, w, at):
        for gi in range(groups):
            ci, co = slice(gi * cg, (gi + 1) * cg), slice(gi * ocg, (gi + 1) * ocg)
            g[:, ci] += np.einsum("nohw,co->nchw", gp[:, co, rows, cols], w[ci, :, ky, kx])
    return g


def _ln_eps(layer):
    return float(layer.get("attrs", {}).get("epsilon", 1e-5))


def layer_norm(x, scale, bias, layer):
    """Over the channels of each position: (x - mean) / sqrt(var + eps) * scale + bias."""
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    y = (x - mean) / np.sqrt(var + _ln_eps(layer)) * _bcast(scale, x.ndim)
    return y if bias is None else y + _bcast(bias, x.ndim)


def layer_norm_back(g, x, scale, layer):
    """J^T g at x: with s = g * scale and xhat the normalised x,
    rstd * (s - mean_c s - xhat * mean_c(s * xhat))."""
    mean = x.mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=1, keepdims=True) + _ln_eps(layer))
    xhat = (x - mean) * rstd
    s = g * _bcast(scale, g.ndim)
    return rstd * (
        s - s.mean(axis=1, keepdims=True) - xhat * (s * xhat).mean(axis=1, keepdims=True)
    )


# -- head: the layout kinds of a detection head's decode (add with weights, concat along an axis,
# reshape, transpose) and affine's broadcast (1, C|1, H|1, W|1) tensors.
LAYOUT_KINDS = ("add", "concat", "reshape", "transpose")


def _affine_param(p, ndim):
    """An affine parameter against an activation: (C,)/(1,) per channel, a rank-4 one as it is."""
    return p if p.ndim == 4 else _bcast(p, ndim)


def layout_forward(layer, ins):
    kind, a = layer["kind"], layer.get("attrs", {})
    if kind == "add":
        w = a.get("weights", [1.0] * len(ins))
        return sum(float(wk) * x for wk, x in zip(w, ins))
    if kind == "concat":
        return np.concatenate(ins, axis=int(_values(a.get("axis", 1), 1)[0]))
    if kind == "reshape":
        return ins[0].reshape((len(ins[0]),) + tuple(int(d) for d in a["shape"]))
    perm = [int(p) for p in a["perm"]]
    return ins[0].transpose([0] + [p + 1 for p in perm]).copy()


def layout_backward(layer, ins, g):
    kind, a = layer["kind"], layer.get("attrs", {})
    if kind == "add":
        w = a.get("weights", [1.0] * len(ins))
        return [float(wk) * g for wk in w]
    if kind == "concat":
        axis = int(_values(a.get("axis", 1), 1)[0])
        sizes = [x.shape[axis] for x in ins]
        return np.split(g, np.cumsum(sizes)[:-1], axis=axis)
    if kind == "reshape":
        return [g.reshape(ins[0].shape)]
    perm = [int(p) for p in a["perm"]]
    return [g.transpose(np.argsort([0] + [p + 1 for p in perm]))]
