"""pydeconv: what a convolutional network sees.

Exact Zeiler & Fergus DeconvNet projections (with guided backprop and plain backprop as
alternative rules) on a small C++/OpenMP CPU engine that records max-pooling switches.
"""

import os as _os

# The engine's OpenMP workers sleep while they wait (OMP_WAIT_POLICY=passive) unless the
# environment says otherwise. A forward runs hundreds of short parallel regions; libgomp's default
# spin-wait keeps each worker busy for a while after every one of them, and on a machine whose
# cores are also busy (other processes, or the caller's own threads) a spinning or descheduled
# worker then stalls every barrier for a scheduler quantum: MobileNetV2's 2-thread forward took
# 345 ms (median; 91 ms at best) spinning against 15 ms (14 ms at best) passive on a loaded 2-core
# host, interleaved in one run (bench/README.md). libgomp reads it once, when it is loaded: this
# must come before the engine's import, and has no effect if another module loaded the same libgomp
# first (then set OMP_WAIT_POLICY in the environment).
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from . import errors
from .errors import (
    ChannelError,
    GraphError,
    ImageError,
    LayerNotFoundError,
    ModelFormatError,
    PydeconvError,
    ShapeError,
    UnsupportedOperatorError,
)
from .limits import Limits, get_limits, set_limits
from .net import (
    Net,
    Trace,
    build,
    convert,
    get_num_threads,
    get_reference_kernels,
    get_winograd,
    load,
    set_num_threads,
    set_reference_kernels,
    set_winograd,
)

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy submodules: image (Pillow), onnx, darknet, fetch, detect
    if name in ("image", "onnx", "darknet", "fetch", "detect"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pydeconv' has no attribute {name!r}")


__all__ = [
    "Net",
    "Trace",
    "build",
    "load",
    "convert",
    "set_num_threads",
    "get_num_threads",
    "set_reference_kernels",
    "get_reference_kernels",
    "set_winograd",
    "get_winograd",
    "errors",
    "Limits",
    "get_limits",
    "set_limits",
    "PydeconvError",
    "ModelFormatError",
    "GraphError",
    "UnsupportedOperatorError",
    "ShapeError",
    "LayerNotFoundError",
    "ChannelError",
    "ImageError",
]
