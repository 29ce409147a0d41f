"""pydeconv: what a convolutional network sees.

Exact Zeiler & Fergus DeconvNet projections (with guided backprop and plain backprop as
alternative rules) on a small C++/OpenMP CPU engine that records max-pooling switches.
"""

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
