"""The optional libraries of the analyses, imported where they are used.

``require("sklearn", "analysis")`` returns the module or raises a PydeconvError that says which
extra to install; ``optional("matplotlib")`` returns the module or None (plots are then skipped
and the numbers are still written, with a note in the report saying how to get the plots).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pydeconv.errors import PydeconvError

_EXTRA = {"sklearn": "analysis", "matplotlib": "analysis", "skimage": "analysis", "dask": "dask"}
_DIST = {"sklearn": "scikit-learn", "skimage": "scikit-image", "dask": "dask[distributed]"}

PLOTS_NOTE = "Plots need matplotlib: pip install 'pydeconv[analysis]'."


class MissingExtraError(PydeconvError):
    """An optional library an analysis needs is not installed."""


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. "sklearn.linear_model"), or raise MissingExtraError."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = extra or _EXTRA.get(top, "analysis")
        dist = _DIST.get(top, top)
        raise MissingExtraError(
            f"this needs {dist}, which is not installed: pip install 'pydeconv[{extra}]'"
        ) from None


def optional(module: str) -> ModuleType | None:
    """Import ``module`` or return None. matplotlib is switched to its file-only Agg backend."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    if module.split(".")[0] == "matplotlib":
        importlib.import_module("matplotlib").use("Agg")
    return mod


def pyplot() -> ModuleType | None:
    """matplotlib.pyplot on the Agg backend, or None without matplotlib."""
    if optional("matplotlib") is None:
        return None
    return importlib.import_module("matplotlib.pyplot")
