"""Resource limits on what a file may declare (docs/SECURITY.md).

The limits and their defaults are defined once, in C++ (csrc/include/pydeconv/limits.hpp); this
module reads and sets those same values, process-wide. Every reader checks a file's declarations
against them before allocating anything: the C++ model and PPM readers, the ONNX importer
(initializer sizes from their dims, node count) and the image loader (declared width x height).
"""

from __future__ import annotations

from . import _core
from .errors import PydeconvError

#: The limits as a value: ``pydeconv.Limits()`` holds the defaults, ``get_limits()`` those in force.
Limits = _core.Limits

FIELDS = (
    "max_tensor_bytes",
    "max_dim",
    "max_input_pixels",
    "max_image_pixels",
    "max_threads",
    "max_json_depth",
    "max_layers",
    "max_members",
    "max_graph_bytes",
)


def get_limits() -> Limits:
    """A copy of the limits in force."""
    return _core.limits()


def set_limits(limits: Limits | None = None, **changes: int) -> Limits:
    """Sets the limits for the whole process: ``limits`` (a :class:`Limits`) and/or single fields
    (``set_limits(max_threads=64)``). Returns the limits that were in force, so that
    ``set_limits(old)`` restores them. Every value must be a positive integer."""
    if limits is not None and not isinstance(limits, Limits):
        raise PydeconvError(f"set_limits: expected a pydeconv.Limits, got {type(limits).__name__}")
    old = _core.limits()
    new = _core.limits()
    for key in FIELDS:
        if limits is not None:
            setattr(new, key, getattr(limits, key))
    for key, value in changes.items():
        if key not in FIELDS:
            raise PydeconvError(f"set_limits: unknown limit {key!r} (known: {', '.join(FIELDS)})")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
            raise PydeconvError(
                f"limit {key} must be a positive integer below 2**63, got {value!r}"
            )
        setattr(new, key, value)
    _core.set_limits(new)
    return old


def limit_str(name: str) -> str:
    """How messages name a limit, as the C++ readers do: ``max_dim = 1048576 (pydeconv.Limits)``."""
    return f"{name} = {getattr(_core.limits(), name)} (pydeconv.Limits)"


def check_threads(n: int) -> int:
    """A thread count against ``max_threads`` (the engine checks it again where a count enters
    C++); for the settings and the command line, which store a count before any call uses it."""
    if n > get_limits().max_threads:
        raise PydeconvError(f"threads = {n} is past {limit_str('max_threads')}")
    return n
