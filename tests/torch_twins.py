"""What the tests' PyTorch twins share: seeded weights, the export with either of torch's ONNX
exporters, and the YOLO-style Conv-BN-SiLU block whose SiLU can take a projection rule's
backward (so torch autograd gives the deconvnet and guided references too)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from test_rules_torch import _Ruled

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


def seeded(make: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """``make()`` under ``torch.manual_seed(seed)``, its normalisation and PReLU parameters drawn
    away from their identity defaults (so folding them is tested), in eval mode."""
    torch.manual_seed(seed)
    model = make()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return model.eval()


def export(model: nn.Module, x, path: str, dynamo: bool) -> None:
    """``torch.onnx.export`` of ``model`` on input ``x``: the dynamo exporter, or TorchScript's at
    opset 17; their warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), path, dynamo=True, verbose=False)
        else:
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17)


class RuledSiLU(nn.Module):
    """SiLU; with ``rule`` deconvnet or guided its backward is that rule's (relu(g), relu(g)*f')."""

    rule = "backprop"

    def forward(self, x):
        return F.silu(x) if self.rule == "backprop" else _Ruled.apply(x, F.silu, self.rule)


def cbs(cin: int, cout: int, k: int, s: int) -> nn.Sequential:
    """Ultralytics' Conv: conv (no bias), batch norm, SiLU (a RuledSiLU)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), RuledSiLU()
    )


def set_rule(model: nn.Module, rule: str) -> None:
    """Every RuledSiLU of ``model`` takes ``rule``'s backward."""
    for m in model.modules():
        if isinstance(m, RuledSiLU):
            m.rule = rule


def unit_gradient_error(model, x, net, trace, layer, out_shape, row, col, rule, rtol) -> float:
    """The projection of a rank-3 output's element ``[0, row, col]`` (pydeconv's ``(0, row, 0,
    col)``, a one-position start signal) under ``rule`` against torch autograd of the same
    element (``model``'s RuledSiLUs set to the rule by the caller); asserted within ``rtol`` and
    1e-4 of the largest gradient value. Returns max |difference| / max |gradient|."""
    xg = x.clone().requires_grad_(True)
    model(xg)[0, row, col].backward()
    want = xg.grad.numpy()
    start = np.zeros(out_shape, np.float32)
    start[0, row, 0, col] = 1.0
    got = net.project(trace, layer, at=start, rule=rule)
    assert np.all(np.isfinite(got))
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-4 * scale)
    return float(np.abs(got - want).max()) / scale
