"""The exceptions pydeconv raises. Every one is a ``ValueError`` subclass."""

from __future__ import annotations


class PydeconvError(ValueError):
    """Base class of every error pydeconv raises for bad input."""


class ModelFormatError(PydeconvError):
    """A model file is missing, corrupt, truncated or malformed."""


class GraphError(PydeconvError):
    """A graph is invalid: unknown layer kind, cycle, dangling input, bad attribute."""


class UnsupportedOperatorError(GraphError):
    """An imported model uses operators pydeconv cannot map (all are listed in the message)."""


class ShapeError(PydeconvError):
    """A tensor or parameter has the wrong shape or dtype."""


class LayerNotFoundError(PydeconvError, KeyError):
    """A layer name that the model does not have."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class ChannelError(PydeconvError, IndexError):
    """A channel or position out of range."""


class ImageError(PydeconvError):
    """An image file is missing or cannot be decoded."""


__all__ = [
    "PydeconvError",
    "ModelFormatError",
    "GraphError",
    "UnsupportedOperatorError",
    "ShapeError",
    "LayerNotFoundError",
    "ChannelError",
    "ImageError",
]
