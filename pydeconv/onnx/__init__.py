"""ONNX import, in pure Python (standard library + NumPy; no ``onnx`` package needed).

``import_onnx(path, preprocess=None, labels=None) -> (graph, params)`` returns the graph dict of
docs/FORMAT.md and its ``"LAYER/PARAM"`` float32 arrays, ready for ``pydeconv.build``.
"""

from .importer import import_onnx

__all__ = ["import_onnx"]
