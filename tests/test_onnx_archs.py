"""The architectures people use, as small PyTorch twins written here (no torchvision: its wheels
do not load with the CPU torch), exported with both of torch's ONNX exporters, imported, and
checked three ways:

- forward: every graph output equals the torch module's and ONNX Runtime's on the same file;
- backprop: the projection from every output of a random start signal equals torch autograd's
  input gradient of <start, output> (the exact gradient, through every fused and folded layer);
- deconvnet and guided projections run and are finite.

ResNet (BN, residual add), MobileNetV2 (depthwise, ReLU6 as Clip), MobileNetV3 (HardSwish, SE gate
with HardSigmoid), EfficientNet (SiLU as Sigmoid*Mul, SE), ShuffleNetV2 (channel split, shuffle by
Reshape/Transpose), DenseNet (concat chains, the one-input Concat), GoogLeNet (four-branch
concat, ceil-mode pools), RegNet (group conv, SE), ConvNeXt (LayerNorm channels last, GELU),
YOLOv3-tiny-style (LeakyReLU, zero pad + 2x2/1 pool, upsample, two heads), YOLOv8-style (C2f
split/concat, SPPF 5x5/1 pools, nearest upsample, three heads), MTCNN-style (PReLU, ceil-mode
pools, a (0, 3, 2, 1) transpose before the dense layers, two heads).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_check import ort_run
from torch_twins import export, seeded

import pydeconv
from pydeconv.onnx import import_onnx

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


# -- building blocks ------------------------------------------------------------------------------
def cbr(cin, cout, k=3, s=1, act=None, groups=1, p=None):
    """Conv (no bias) + BatchNorm + activation, the block most CNNs repeat."""
    layers = [
        nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = cbr(cin, cout, 3, stride, nn.ReLU())
            self.conv2 = cbr(cout, cout, 3, 1)
            self.down = cbr(cin, cout, 1, stride) if stride != 1 or cin != cout else None

        def forward(self, x):
            identity = x if self.down is None else self.down(x)
            return F.relu(self.conv2(self.conv1(x)) + identity)

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 7, 2, nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self.Block(8, 8, 1)
        self.layer2 = self.Block(8, 16, 2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.layer2(self.layer1(self.pool(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MobileNetV2(nn.Module):
    class Inverted(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            mid = cin * expand
            self.conv = nn.Sequential(
                cbr(cin, mid, 1, 1, nn.ReLU6()),
                cbr(mid, mid, 3, stride, nn.ReLU6(), groups=mid),
                cbr(mid, cout, 1, 1),
            )
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            cbr(3, 8, 3, 2, nn.ReLU6()),
            self.Inverted(8, 8, 1, 3),
            self.Inverted(8, 12, 2, 3),
            self.Inverted(12, 12, 1, 3),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(12, 4))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class SE(nn.Module):
    def __init__(self, c, squeeze, act, gate):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.act, self.gate = act, gate

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class MobileNetV3(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3, 2, nn.Hardswish())
        self.expand = cbr(8, 16, 1, 1, nn.Hardswish())
        self.dw = cbr(16, 16, 5, 2, nn.Hardswish(), groups=16)
        self.se = SE(16, 8, nn.ReLU(), nn.Hardsigmoid())
        self.project = cbr(16, 12, 1, 1)
        self.head = nn.Sequential(
            nn.Linear(12, 10), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(10, 3)
        )

    def forward(self, x):
        x = self.project(self.se(self.dw(self.expand(self.stem(x)))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class EfficientNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3, 2, nn.SiLU())
        self.expand = cbr(8, 24, 1, 1, nn.SiLU())
        self.dw = cbr(24, 24, 3, 1, nn.SiLU(), groups=24)
        self.se = SE(24, 4, nn.SiLU(), nn.Sigmoid())
        self.project = cbr(24, 8, 1, 1)
        self.head = cbr(8, 16, 1, 1, nn.SiLU())

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.se(self.dw(self.expand(x))))  # MBConv with its skip
        return self.head(x)


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class ShuffleNetV2(nn.Module):
    class Unit(nn.Module):
        def __init__(self, c, stride):
            super().__init__()
            half = c // 2
            self.stride = stride
            cin = c if stride == 2 else half
            if stride == 2:
                self.branch1 = nn.Sequential(
                    cbr(c, c, 3, 2, groups=c), cbr(c, half, 1, 1, nn.ReLU())
                )
            self.branch2 = nn.Sequential(
                cbr(cin, half, 1, 1, nn.ReLU()),
                cbr(half, half, 3, stride, groups=half),
                cbr(half, half, 1, 1, nn.ReLU()),
            )

        def forward(self, x):
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            return channel_shuffle(out, 2)

    def __init__(self):
        super().__init__()
        self.conv1 = cbr(3, 8, 3, 2, nn.ReLU())
        self.stage = nn.Sequential(self.Unit(8, 2), self.Unit(8, 1))
        self.conv5 = cbr(8, 16, 1, 1, nn.ReLU())

    def forward(self, x):
        return self.conv5(self.stage(self.conv1(x)))


class DenseNet(nn.Module):
    class Layer(nn.Module):
        def __init__(self, cin, growth):
            super().__init__()
            self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 2 * growth, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(2 * growth)
            self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

        def forward(self, inputs):
            x = torch.cat(inputs, 1)  # torchvision: one input for the block's first layer
            x = self.conv1(F.relu(self.norm1(x)))
            return self.conv2(F.relu(self.norm2(x)))

    def __init__(self):
        super().__init__()
        self.conv0 = cbr(3, 8, 3, 1, nn.ReLU())
        self.layers = nn.ModuleList([self.Layer(8 + 4 * i, 4) for i in range(3)])
        self.norm = nn.BatchNorm2d(20)
        self.transition = nn.Conv2d(20, 10, 1, bias=False)

    def forward(self, x):
        features = [self.conv0(x)]
        for layer in self.layers:
            features.append(layer(features))
        x = F.relu(self.norm(torch.cat(features, 1)))
        return F.avg_pool2d(self.transition(x), 2, 2)


class GoogLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3, 2, nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.b1 = cbr(8, 4, 1, 1, nn.ReLU())
        self.b2 = nn.Sequential(cbr(8, 4, 1, 1, nn.ReLU()), cbr(4, 6, 3, 1, nn.ReLU()))
        self.b3 = nn.Sequential(cbr(8, 2, 1, 1, nn.ReLU()), cbr(2, 4, 3, 1, nn.ReLU()))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), cbr(8, 4, 1, 1, nn.ReLU()))

    def forward(self, x):
        x = self.pool(self.stem(x))
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class RegNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3, 2, nn.ReLU())
        self.a = cbr(8, 16, 1, 1, nn.ReLU())
        self.b = cbr(16, 16, 3, 2, nn.ReLU(), groups=4)
        self.se = SE(16, 2, nn.ReLU(), nn.Sigmoid())
        self.c = cbr(16, 16, 1, 1)
        self.proj = cbr(8, 16, 1, 2)

    def forward(self, x):
        x = self.stem(x)
        return F.relu(self.proj(x) + self.c(self.se(self.b(self.a(x)))))


class LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt LayerNorm2d: permute, LayerNorm over C, permute back."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.norm = nn.LayerNorm(c, eps=1e-6)
            self.pwconv1, self.pwconv2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
            self.gamma = nn.Parameter(torch.rand(c) + 0.5)

        def forward(self, x):
            y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
            y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
            return x + y.permute(0, 3, 1, 2)

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 4, 4), LayerNorm2d(8, eps=1e-6))
        self.stage1 = self.Block(8)
        self.down = nn.Sequential(LayerNorm2d(8, eps=1e-6), nn.Conv2d(8, 16, 2, 2))
        self.stage2 = self.Block(16)
        self.head_norm = LayerNorm2d(16, eps=1e-6)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        x = self.head_norm(F.adaptive_avg_pool2d(x, 1))
        return self.fc(torch.flatten(x, 1))


class YoloV3Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        leaky = nn.LeakyReLU(0.1)
        self.c1 = cbr(3, 8, 3, 1, leaky)
        self.c2 = cbr(8, 16, 3, 1, leaky)
        self.c3 = cbr(16, 16, 3, 1, leaky)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))  # Darknet's size-2 stride-1 max pool
        self.c4 = cbr(16, 8, 1, 1, leaky)
        self.head1 = nn.Conv2d(8, 14, 1)
        self.c5 = cbr(8, 4, 1, 1, leaky)
        self.head2 = nn.Conv2d(4 + 16, 14, 1)

    def forward(self, x):
        x = F.max_pool2d(self.c1(x), 2, 2)
        route = self.c2(x)
        x = F.max_pool2d(route, 2, 2)
        x = F.max_pool2d(self.pad(self.c3(x)), 2, 1)
        x = self.c4(x)
        up = F.interpolate(self.c5(x), scale_factor=2, mode="nearest")
        return self.head1(x), self.head2(torch.cat([up, route], 1))


class YoloV8(nn.Module):
    class Bottleneck(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.cv1, self.cv2 = cbr(c, c, 3, 1, nn.SiLU()), cbr(c, c, 3, 1, nn.SiLU())

        def forward(self, x):
            return x + self.cv2(self.cv1(x))

    class C2f(nn.Module):
        def __init__(self, cin, cout, n=1):
            super().__init__()
            self.c = cout // 2
            self.cv1 = cbr(cin, 2 * self.c, 1, 1, nn.SiLU())
            self.cv2 = cbr((2 + n) * self.c, cout, 1, 1, nn.SiLU())
            self.m = nn.ModuleList(YoloV8.Bottleneck(self.c) for _ in range(n))

        def forward(self, x):
            y = list(self.cv1(x).chunk(2, 1))
            y.extend(m(y[-1]) for m in self.m)
            return self.cv2(torch.cat(y, 1))

    class SPPF(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.cv1, self.cv2 = cbr(c, c // 2, 1, 1, nn.SiLU()), cbr(2 * c, c, 1, 1, nn.SiLU())
            self.m = nn.MaxPool2d(5, 1, 2)

        def forward(self, x):
            y = [self.cv1(x)]
            y.extend(self.m(y[-1]) for _ in range(3))
            return self.cv2(torch.cat(y, 1))

    def __init__(self):
        super().__init__()
        s = nn.SiLU
        self.b0 = cbr(3, 8, 3, 2, s())
        self.b1 = nn.Sequential(cbr(8, 8, 3, 2, s()), self.C2f(8, 8))  # /4
        self.b2 = nn.Sequential(cbr(8, 16, 3, 2, s()), self.C2f(16, 16))  # P3 /8
        self.b3 = nn.Sequential(cbr(16, 16, 3, 2, s()), self.C2f(16, 16))  # P4 /16
        self.b4 = nn.Sequential(cbr(16, 16, 3, 2, s()), self.C2f(16, 16), self.SPPF(16))  # /32
        self.n1 = self.C2f(32, 16)
        self.n2 = self.C2f(32, 16)
        self.heads = nn.ModuleList(
            nn.ModuleList([nn.Sequential(cbr(16, 8, 3, 1, s()), nn.Conv2d(8, 8, 1)),
                           nn.Sequential(cbr(16, 8, 3, 1, s()), nn.Conv2d(8, 2, 1))])
            for _ in range(3)
        )  # fmt: skip

    def forward(self, x):
        p3 = self.b2(self.b1(self.b0(x)))
        p4 = self.b3(p3)
        p5 = self.b4(p4)
        n4 = self.n1(torch.cat([F.interpolate(p5, scale_factor=2.0, mode="nearest"), p4], 1))
        n3 = self.n2(torch.cat([F.interpolate(n4, scale_factor=2.0, mode="nearest"), p3], 1))
        return tuple(
            torch.cat([box(f), cls(f)], 1) for (box, cls), f in zip(self.heads, (n3, n4, p5))
        )


class MTCNN(nn.Module):
    """MTCNN's R-Net: PReLU, ceil-mode pools, a (0, 3, 2, 1) permute before the dense layer."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 8, 3), nn.PReLU(8)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(8, 12, 3), nn.PReLU(12)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(12, 16, 2), nn.PReLU(16)
        self.dense4, self.prelu4 = nn.Linear(16 * 3 * 3, 32), nn.PReLU(32)
        self.dense5_1, self.dense5_2 = nn.Linear(32, 2), nn.Linear(32, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


ARCHS = {
    "resnet": (ResNet, 32, ["conv2d", "add", "max_pool2d", "linear"]),
    "mobilenet_v2": (MobileNetV2, 32, ["clip", "add"]),
    "mobilenet_v3": (MobileNetV3, 32, ["hardswish", "hardsigmoid", "mul"]),
    "efficientnet": (EfficientNet, 32, ["silu", "sigmoid", "mul"]),
    "shufflenet_v2": (ShuffleNetV2, 32, ["slice", "channel_shuffle", "concat"]),
    "densenet": (DenseNet, 16, ["batch_norm", "concat", "avg_pool2d"]),
    "googlenet": (GoogLeNet, 32, ["concat", "max_pool2d"]),
    "regnet": (RegNet, 32, ["mul", "sigmoid", "add"]),
    "convnext": (ConvNeXt, 32, ["layer_norm", "gelu"]),
    "yolov3_tiny": (YoloV3Tiny, 32, ["leaky_relu", "pad", "upsample"]),
    "yolov8": (YoloV8, 64, ["silu", "slice", "upsample", "max_pool2d"]),
    "mtcnn": (MTCNN, 24, ["prelu", "softmax", "linear"]),
}


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_architecture(tmp_path, arch, exporter):
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    module_class, size, expected_kinds = ARCHS[arch]
    model = seeded(module_class)
    x = torch.from_numpy(
        np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
    )
    path = str(tmp_path / f"{arch}.onnx")
    export(model, x, path, exporter == "dynamo")
    graph, params = import_onnx(path)
    kinds = {layer["kind"] for layer in graph["layers"]}
    assert set(expected_kinds) <= kinds, kinds
    assert "batch_norm" not in kinds or arch == "densenet"  # every BN after a conv is folded
    net = pydeconv.build(graph, params)

    with torch.no_grad():
        want = model(x)
    want = [t.numpy() for t in (want if isinstance(want, tuple) else (want,))]
    out, trace = net.forward(x.numpy())
    got = list(out.values()) if isinstance(out, dict) else [out]
    assert len(got) == len(want) == len(graph["outputs"])
    ort = list(ort_run(path, x.numpy()).values())  # the dynamo exporter writes external data
    worst = 0.0
    for mine, ref, ort_ref in zip(got, want, ort):
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=2e-5 * scale)
        np.testing.assert_allclose(mine, ort_ref, rtol=1e-4, atol=2e-5 * scale)
        worst = max(worst, float(np.abs(mine - ort_ref).max()))
    # The README's "Supported networks" figures: pytest tests/test_onnx_archs.py -s
    print(f"\n{arch}/{exporter}: max abs difference vs ONNX Runtime {worst:.2g}")

    # backprop from every output = torch autograd of <start, output>; the other rules run.
    rng = np.random.default_rng(2)
    starts = [rng.standard_normal(r.shape).astype(np.float32) for r in want]
    xg = x.clone().requires_grad_(True)
    outs = model(xg)
    outs = outs if isinstance(outs, tuple) else (outs,)
    sum((o * torch.from_numpy(s)).sum() for o, s in zip(outs, starts)).backward()
    grad = xg.grad.numpy()
    mine = sum(
        net.project(trace, layer, at=s, rule="backprop")
        for layer, s in zip(graph["outputs"], starts)
    )
    np.testing.assert_allclose(mine, grad, rtol=1e-3, atol=1e-4 * float(np.abs(grad).max()))
    for rule in ("deconvnet", "guided"):
        for layer, s in zip(graph["outputs"], starts):
            image = net.project(trace, layer, at=s, rule=rule)
            assert image.shape == grad.shape and np.all(np.isfinite(image))
