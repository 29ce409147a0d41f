"""Tiny seeded models in the FORMAT.md dict form: each builder returns (graph, params).

Parameters are float32 and named "LAYER/PARAM".  Weights are scaled by 1/sqrt(fan_in) so that
activations stay O(1) through every layer, which keeps relative tolerances meaningful.
"""

from __future__ import annotations

import npref
import numpy as np


class _Builder:
    """Appends layers in execution order and draws their parameters from one seeded generator."""

    def __init__(self, name, in_shape, seed):
        self.rng = np.random.default_rng(seed)
        self.graph = {
            "format": "pydeconv",
            "version": 1,
            "name": name,
            "input": {"name": "input", "shape": [int(s) for s in in_shape]},
            "layers": [],
        }
        self.params = {}
        self.shapes = {"input": tuple(int(s) for s in in_shape)}

    def add(self, name, kind, inputs, attrs=None, params=None):
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        layer = {"name": name, "kind": kind, "inputs": inputs}
        if attrs:
            layer["attrs"] = attrs
        if params:
            layer["params"] = {k: list(v.shape) for k, v in params.items()}
            for k, v in params.items():
                self.params[f"{name}/{k}"] = np.ascontiguousarray(v, dtype=np.float32)
        self.graph["layers"].append(layer)
        self.shapes[name] = self._infer_shape(name)
        return name

    def _infer_shape(self, name):
        """Per-sample output shape, taken from the reference itself on a one-sample zero input."""
        x = np.zeros((1,) + self.shapes["input"])
        acts, _ = npref.forward(self.graph, self.params, x)
        return acts[name].shape[1:]

    def weight(self, shape, fan_in):
        return self.rng.standard_normal(shape) / np.sqrt(fan_in)

    def conv(self, name, src, oc, k, stride=1, padding=0, dilation=1, groups=1, bias=True):
        ic = self.shapes[src][0]
        attrs = {
            "kernel_size": [k, k],
            "stride": [stride, stride],
            "padding": list(npref._padding(padding)),
            "dilation": [dilation, dilation],
            "groups": groups,
        }
        p = {"weight": self.weight((oc, ic // groups, k, k), ic // groups * k * k)}
        if bias:
            p["bias"] = 0.1 * self.rng.standard_normal(oc)
        return self.add(name, "conv2d", src, attrs, p)

    def linear(self, name, src, out, bias=True):
        fan_in = int(np.prod(self.shapes[src]))
        p = {"weight": self.weight((out, fan_in), fan_in)}
        if bias:
            p["bias"] = 0.1 * self.rng.standard_normal(out)
        return self.add(name, "linear", src, None, p)

    def batch_norm(self, name, src, affine=True):
        c = self.shapes[src][0]
        p = {
            "scale": self.rng.uniform(0.5, 1.5, c),
            "bias": 0.2 * self.rng.standard_normal(c) if affine else np.zeros(c),
            "mean": 0.2 * self.rng.standard_normal(c) if affine else np.zeros(c),
            "var": self.rng.uniform(0.5, 2.0, c),
        }
        return self.add(name, "batch_norm", src, {"epsilon": 1e-3}, p)

    def done(self):
        self.graph["outputs"] = [self.graph["layers"][-1]["name"]]
        return self.graph, self.params


# LRN with a large alpha so that the normalisation (and its gradient) is far from the identity.
LRN_ATTRS = {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 2.0}


def zfnet_like(seed=0, size=37):
    """A shrunken ZFNet: 3 x size x size input, the same layer sequence and edge cases
    (asymmetric padding, overlapping ceil_mode pools, groups, dilation, a linear head)."""
    b = _Builder("zfnet-like", (3, size, size), seed)
    b.conv("conv1", "input", 8, 7, stride=2, padding=[1, 2, 3, 1])
    b.add("relu1", "relu", "conv1")
    b.add("lrn1", "lrn", "relu1", LRN_ATTRS)
    b.add(
        "pool1", "max_pool2d", "lrn1", {"kernel_size": [3, 3], "stride": [2, 2], "ceil_mode": True}
    )
    b.conv("conv2", "pool1", 12, 5, stride=2, padding=2)
    b.add("relu2", "relu", "conv2")
    b.add("lrn2", "lrn", "relu2", LRN_ATTRS)
    b.add(
        "pool2",
        "max_pool2d",
        "lrn2",
        {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1], "ceil_mode": True},
    )
    b.conv("conv3", "pool2", 16, 3, padding=1, groups=2)
    b.add("relu3", "relu", "conv3")
    b.conv("conv4", "relu3", 16, 3, padding=2, dilation=2)
    b.add("relu4", "relu", "conv4")
    b.add("pool3", "max_pool2d", "relu4", {"kernel_size": [2, 2], "stride": [1, 1]})
    b.add("flatten", "flatten", "pool3")
    b.linear("fc6", "flatten", 20)
    b.add("relu6", "relu", "fc6")
    b.add("drop6", "dropout", "relu6")
    b.linear("fc7", "drop6", 10)
    b.add("prob", "softmax", "fc7")
    return b.done()


def vgg_like(seed=0, size=20):
    """3x3 stride-1 convs with enough channels (>= 16) for the Winograd paths (F(2x2, 3x3) and
    F(4x4, 3x3)), forward and in the projection: odd map sizes after pooling, asymmetric padding,
    valid padding."""
    b = _Builder("vgg-like", (3, size, size), seed)
    b.conv("conv1_1", "input", 16, 3, padding=1)
    b.add("relu1_1", "relu", "conv1_1")
    b.conv("conv1_2", "relu1_1", 24, 3, padding=1)
    b.add("relu1_2", "relu", "conv1_2")
    b.add("pool1", "max_pool2d", "relu1_2", {"kernel_size": [2, 2], "stride": [2, 2]})
    b.conv("conv2_1", "pool1", 32, 3, padding=[1, 0, 2, 1])
    b.add("relu2_1", "relu", "conv2_1")
    b.conv("conv2_2", "relu2_1", 16, 3, padding=0)
    b.add("relu2_2", "relu", "conv2_2")
    b.conv("conv2_3", "relu2_2", 20, 3, padding=1, bias=False)
    b.add("relu2_3", "relu", "conv2_3")
    b.add(
        "pool2",
        "max_pool2d",
        "relu2_3",
        {"kernel_size": [2, 2], "stride": [2, 2], "ceil_mode": True},
    )
    return b.done()


def small_dag(seed=0):
    """Branches that split and meet again: add, concat, a tensor with three consumers, batch_norm,
    avg pools with both divisor modes (ceil_mode windows running past the padding), global average
    pool and a residual add."""
    b = _Builder("small-dag", (3, 12, 10), seed)
    b.conv("conv1", "input", 6, 3, padding=1)
    b.add("relu1", "relu", "conv1")
    b.conv("conv_a", "relu1", 6, 3, padding=1)
    b.add("relu_a", "relu", "conv_a")
    b.conv("conv_b", "relu1", 6, 1)
    b.batch_norm("bn_b", "conv_b")
    b.add("add1", "add", ["relu_a", "bn_b"])
    b.add("cat1", "concat", ["relu_a", "conv_b", "relu1"])
    b.batch_norm("bn1", "cat1")
    b.add("relu2", "relu", "bn1")
    pool = {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1], "ceil_mode": True}
    b.add("avg1", "avg_pool2d", "relu2", dict(pool, count_include_pad=False))
    b.add("avg2", "avg_pool2d", "add1", dict(pool, count_include_pad=True))
    b.conv("conv_c", "avg1", 6, 1)
    b.add("add2", "add", ["conv_c", "avg2"])
    b.add("relu3", "relu", "add2")
    b.add("gap", "global_avg_pool", "relu3")
    b.add("flatten", "flatten", "gap")
    b.linear("fc", "flatten", 4)
    return b.done()


def single_layer(kind, in_shape, attrs=None, seed=0, with_params=True):
    """A graph of one layer of `kind` on an input of per-sample shape `in_shape`.

    attrs go into the layer as given, except two builder-only keys: "out_channels" (conv2d, default
    the input channels) and "out_features" (linear, default 5).  For add and concat, "n_inputs"
    (default 2) copies of the input feed the layer.  with_params=False builds the bias-free, linear
    version: conv2d and linear without bias, batch_norm with zero mean and bias."""
    attrs = dict(attrs or {})
    b = _Builder(f"single-{kind}", in_shape, seed)
    c = in_shape[0]
    if kind == "conv2d":
        oc = attrs.pop("out_channels", c)
        groups = attrs.get("groups", 1)
        k = npref._pair(attrs.setdefault("kernel_size", [3, 3]), None)
        p = {"weight": b.weight((oc, c // groups, k[0], k[1]), c // groups * k[0] * k[1])}
        if with_params:
            p["bias"] = 0.1 * b.rng.standard_normal(oc)
        b.add(kind, kind, "input", attrs, p)
    elif kind == "linear":
        out = attrs.pop("out_features", 5)
        fan_in = int(np.prod(in_shape))
        p = {"weight": b.weight((out, fan_in), fan_in)}
        if with_params:
            p["bias"] = 0.1 * b.rng.standard_normal(out)
        b.add(kind, kind, "input", attrs or None, p)
    elif kind == "batch_norm":
        b.batch_norm(kind, "input", affine=with_params)
        if attrs:
            b.graph["layers"][-1]["attrs"].update(attrs)
    elif kind in ("add", "concat"):
        n = attrs.pop("n_inputs", 2)
        b.add(kind, kind, ["input"] * n, attrs or None)
    elif kind in ("mul", "affine"):
        _shape_layer(b, kind, "input", attrs, with_params)
    elif kind == "prelu":
        b.add(kind, kind, "input", attrs or None, {"slope": b.rng.uniform(-0.5, 0.5, c)})
    elif kind == "conv_transpose2d":
        oc = attrs.pop("out_channels", c)
        groups = attrs.get("groups", 1)
        k = npref._pair(attrs.setdefault("kernel_size", [3, 3]), None)
        p = {"weight": b.weight((c, oc // groups, k[0], k[1]), c // groups * k[0] * k[1])}
        if with_params:
            p["bias"] = 0.1 * b.rng.standard_normal(oc)
        b.add(kind, kind, "input", attrs, p)
    elif kind == "layer_norm":
        p = {"scale": 1.0 + 0.5 * b.rng.standard_normal(c)}
        if with_params:
            p["bias"] = 0.1 * b.rng.standard_normal(c)
        b.add(kind, kind, "input", attrs or None, p)
    else:
        b.add(kind, kind, "input", attrs or None)
    return b.done()


def merge_net(kind, in_shape, out_channels=(3, 5), seed=0):
    """Bias-free 1x1 convolutions "br0", "br1", ... of the input meeting in one `kind` layer ("add"
    or "concat") named like the kind: distinct inputs, so a projection must route each part back
    through its own branch."""
    b = _Builder(f"merge-{kind}", in_shape, seed)
    if kind == "add":
        out_channels = [out_channels[0]] * len(out_channels)
    names = [b.conv(f"br{i}", "input", oc, 1, bias=False) for i, oc in enumerate(out_channels)]
    b.add(kind, kind, names)
    return b.done()


def head_net(in_shape=(3, 2, 3), seed=0):
    """The rank-2 layers on their own: flatten, linear, relu, dropout, linear, softmax."""
    b = _Builder("head", in_shape, seed)
    b.add("flatten", "flatten", "input")
    b.linear("fc1", "flatten", 7)
    b.add("relu", "relu", "fc1")
    b.add("dropout", "dropout", "relu")
    b.linear("fc2", "dropout", 5)
    b.add("softmax", "softmax", "fc2")
    return b.done()


def decoder_net(in_shape=(3, 13, 11), seed=0):
    """An encoder-decoder: a stride-2 conv, ReLU, a stride-2 transposed conv "up", a layer norm
    "ln", a 3x3 conv "head"."""
    b = _Builder("decoder", in_shape, seed)
    b.conv("enc", "input", 8, 3, stride=2, padding=1)
    b.add("relu", "relu", "enc")
    w = b.weight((8, 5, 4, 4), 8 * 4)
    attrs = {"kernel_size": [4, 4], "stride": [2, 2], "padding": [1, 1, 2, 1]}
    attrs["output_padding"] = [1, 0]
    b.add("up", "conv_transpose2d", "relu", attrs, {"weight": w, "bias": 0.1 * np.ones(5)})
    p = {"scale": 1.0 + 0.5 * b.rng.standard_normal(5), "bias": 0.1 * b.rng.standard_normal(5)}
    b.add("ln", "layer_norm", "up", None, p)
    b.conv("head", "ln", 4, 3, padding=1)
    return b.done()


def inverted_residual(in_shape=(4, 13, 11), seed=0):
    """MobileNetV2's block: 1x1 expansion "expand", ReLU, a 3x3 stride-2 depthwise conv "dw" (the
    depthwise kernels, with the ReLU after it fused into its forward), ReLU "dw_relu", 1x1
    projection "project"."""
    b = _Builder("inverted-residual", in_shape, seed)
    b.conv("expand", "input", 12, 1)
    b.add("relu", "relu", "expand")
    b.conv("dw", "relu", 12, 3, stride=2, padding=1, groups=12)
    b.add("dw_relu", "relu", "dw")
    b.conv("project", "dw_relu", 6, 1)
    return b.done()


def random_input(shape, seed=0):
    """Standard normal float32 input of the full (N, C, H, W) shape."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# Builder-only keys: mul's "broadcast" (the second input, made from `src` by layers of their own:
# "none" x * x, "channel" (C, 1, 1) by global_avg_pool, "spatial" (1, H, W) by slicing channel 0,
# "scalar" (1, 1, 1), "rows" (C, 1, W) by an H x 1 average pool) and "swap" (the broadcast input
# first); affine's "params" ("scale", "bias" or "both") and "scalar" ((1,) instead of (C,)).
def _shape_layer(b, kind, src, attrs, with_params=True, name=None):
    name = name or kind
    c, h, _ = b.shapes[src]
    if kind == "mul":
        how = attrs.pop("broadcast", "none")
        swap = attrs.pop("swap", False)
        other = src
        if how in ("channel", "scalar"):
            other = b.add(f"{name}_gap", "global_avg_pool", src)
        if how in ("spatial", "scalar"):
            other = b.add(f"{name}_slice", "slice", other, {"start": 0, "end": 1})
        if how == "rows":
            other = b.add(f"{name}_rows", "avg_pool2d", src, {"kernel_size": [h, 1]})
        ins = [other, src] if swap else [src, other]
        return b.add(name, kind, ins, attrs or None)
    which = attrs.pop("params", "both")
    n = 1 if attrs.pop("scalar", False) else c
    p = {}
    if which in ("scale", "both"):
        p["scale"] = b.rng.uniform(-1.5, 1.5, n)
    if which in ("bias", "both") and with_params:
        p["bias"] = 0.3 * b.rng.standard_normal(n)
    if not p:  # bias only, asked linear: the scale alone keeps it linear
        p["scale"] = b.rng.uniform(-1.5, 1.5, n)
    return b.add(name, kind, src, attrs or None, p)


def sandwich_net(kind, in_shape, attrs=None, seed=0):
    """conv_a (3x3, pad 1) -> `kind` -> conv_b (3x3, pad 1): projected from conv_b at one
    position, `kind`'s gradients in and out are region-limited (partly cleared, NaN-poisoned
    elsewhere under PYDECONV_POISON), so its regions and input_region must be exact."""
    attrs = dict(attrs or {})
    b = _Builder(f"sandwich-{kind}", in_shape, seed)
    b.conv("conv_a", "input", in_shape[0], 3, padding=1)
    if kind in ("mul", "affine"):
        _shape_layer(b, kind, "conv_a", attrs)
    else:
        b.add(kind, kind, "conv_a", attrs or None)
    b.conv("conv_b", kind, 4, 3, padding=1)
    return b.done()


def se_net(in_shape=(6, 7, 5), seed=0):
    """A squeeze-and-excitation block without its sigmoid: x = conv(input); the gate
    conv1x1(relu(conv1x1(global_avg_pool(x)))), (C, 1, 1); their product, "mul"."""
    b = _Builder("se", in_shape, seed)
    c = in_shape[0]
    b.conv("x", "input", c, 3, padding=1)
    b.add("gap", "global_avg_pool", "x")
    b.conv("squeeze", "gap", 3, 1)
    b.add("relu", "relu", "squeeze")
    b.conv("excite", "relu", c, 1)
    b.add("mul", "mul", ["x", "excite"])
    return b.done()
