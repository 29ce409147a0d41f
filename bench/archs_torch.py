"""Full-size PyTorch twins of the architectures bench/archs.py times: ResNet-18, MobileNetV2 and a
YOLOv8n trunk + neck + raw detection heads (what Ultralytics' Detect layer convolves, before its
DFL/decode post-processing). Written here because torchvision's registry wheels do not load with
the CPU torch wheel. Seeded random weights: speed does not depend on them.
"""

from __future__ import annotations

import torch
from torch import nn


def _cbr(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act(),
    )


# -- ResNet-18 ------------------------------------------------------------------------------------
class _Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = _cbr(cin, cout, 3, stride)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        skip = x if self.down is None else self.down(x)
        return torch.relu(self.b(self.a(x)) + skip)


def resnet18(classes=1000):
    layers = [_cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_Basic(cin, cout, stride), _Basic(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


# -- MobileNetV2 ----------------------------------------------------------------------------------
class _Inverted(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        parts = [] if expand == 1 else [_cbr(cin, mid, 1, act=nn.ReLU6)]
        parts += [
            _cbr(mid, mid, 3, stride, groups=mid, act=nn.ReLU6),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*parts)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def mobilenet_v2(classes=1000):
    layers = [_cbr(3, 32, 3, 2, act=nn.ReLU6)]
    cin = 32
    for t, c, n, s in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for i in range(n):
            layers.append(_Inverted(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [
        _cbr(cin, 1280, 1, act=nn.ReLU6),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(1280, classes),
    ]
    return nn.Sequential(*layers)


# -- YOLOv8n (Ultralytics layout, width 0.25, depth 0.33) ------------------------------------------
def _conv(cin, cout, k=1, s=1):
    return _cbr(cin, cout, k, s, act=nn.SiLU)


class _Bottleneck(nn.Module):
    def __init__(self, c, shortcut):
        super().__init__()
        self.cv1, self.cv2, self.add = _conv(c, c, 3), _conv(c, c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class _C2f(nn.Module):
    def __init__(self, cin, cout, n, shortcut):
        super().__init__()
        self.c = cout // 2
        self.cv1 = _conv(cin, 2 * self.c)
        self.cv2 = _conv((2 + n) * self.c, cout)
        self.m = nn.ModuleList(_Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x):
        ys = list(self.cv1(x).split((self.c, self.c), 1))
        for m in self.m:
            ys.append(m(ys[-1]))
        return self.cv2(torch.cat(ys, 1))


class _SPPF(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.cv1, self.cv2 = _conv(cin, cin // 2), _conv(cin * 2, cout)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class YoloV8n(nn.Module):
    """Outputs the three raw head tensors (1, 64 + classes, H, W) at strides 8, 16, 32."""

    def __init__(self, classes=80):
        super().__init__()
        self.b0, self.b1 = _conv(3, 16, 3, 2), _conv(16, 32, 3, 2)
        self.b2, self.b3 = _C2f(32, 32, 1, True), _conv(32, 64, 3, 2)
        self.b4, self.b5 = _C2f(64, 64, 2, True), _conv(64, 128, 3, 2)
        self.b6, self.b7 = _C2f(128, 128, 2, True), _conv(128, 256, 3, 2)
        self.b8, self.b9 = _C2f(256, 256, 1, True), _SPPF(256, 256)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.n12, self.n15 = _C2f(384, 128, 1, False), _C2f(192, 64, 1, False)
        self.d16, self.n18 = _conv(64, 64, 3, 2), _C2f(192, 128, 1, False)
        self.d19, self.n21 = _conv(128, 128, 3, 2), _C2f(384, 256, 1, False)
        self.box = nn.ModuleList(
            nn.Sequential(_conv(c, 64, 3), _conv(64, 64, 3), nn.Conv2d(64, 64, 1))
            for c in (64, 128, 256)
        )
        self.cls = nn.ModuleList(
            nn.Sequential(_conv(c, 80, 3), _conv(80, 80, 3), nn.Conv2d(80, classes, 1))
            for c in (64, 128, 256)
        )

    def forward(self, x):
        p3 = self.b4(self.b3(self.b2(self.b1(self.b0(x)))))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        n12 = self.n12(torch.cat([self.up(p5), p4], 1))
        n15 = self.n15(torch.cat([self.up(n12), p3], 1))
        n18 = self.n18(torch.cat([self.d16(n15), n12], 1))
        n21 = self.n21(torch.cat([self.d19(n18), p5], 1))
        return tuple(
            torch.cat([b(f), c(f)], 1)
            for f, b, c in zip((n15, n18, n21), self.box, self.cls, strict=True)
        )


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights with BN statistics that keep activations in a sane range."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()
