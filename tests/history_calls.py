"""Helper of tests/test_memory.py (run as a script in a fresh process): a mixed sequence of
forwards and projections on a small VGG-like net whose 14x14 convs take Winograd, keep their
transformed filters (the WinoCache) and choose Winograd or the direct GEMM per projection.
Runs the calls in the order given on the command line and prints "index digest" per call."""

from __future__ import annotations

import hashlib
import sys

import models

import pydeconv


def net_and_calls():
    b = models._Builder("history", (48, 26, 26), 21)
    b.conv("conv1", "input", 96, 3, padding=1)
    b.add("relu1", "relu", "conv1")
    b.add("pool1", "max_pool2d", "relu1", {"kernel_size": [2, 2], "stride": [2, 2]})
    b.conv("conv2", "pool1", 192, 3, padding=1)
    b.add("relu2", "relu", "conv2")
    b.conv("conv3", "relu2", 192, 3, padding=1)
    b.add("relu3", "relu", "conv3")
    b.conv("conv4", "relu3", 128, 3, padding=1)
    b.add("relu4", "relu", "conv4")
    b.add("flat", "flatten", "relu4")
    b.linear("fc", "flat", 64)  # parameters enough for the net's filter-cache budget
    graph, params = b.done()
    net = pydeconv.build(graph, params)
    x = models.random_input((1, 48, 26, 26), 22)
    calls = [("forward", None, None, None)]
    starts = (
        ("conv4", 5),
        ("conv3", [1, 7, 9, 11]),
        ("relu3", 40),
        ("conv2", 3),
        ("pool1", [0, 2]),
    )
    for layer, ch in starts:
        for rule in ("deconvnet", "guided", "backprop"):
            for at in ("max", "map", (3, 4)):
                calls.append((layer, ch, rule, at))
    return net, x, calls


def main() -> None:
    net, x, calls = net_and_calls()
    order = [int(i) for i in sys.argv[1].split(",")]
    trace = None
    for i in order:
        layer, ch, rule, at = calls[i]
        if layer == "forward" or trace is None:
            out, trace = net.forward(x, threads=2, keep="all")
            if layer == "forward":
                print(i, hashlib.sha256(out.tobytes()).hexdigest()[:16])
                continue
        p = net.project(trace, layer, ch, rule=rule, at=at, threads=2)
        print(i, hashlib.sha256(p.tobytes()).hexdigest()[:16])


if __name__ == "__main__":
    main()
