"""The ONNX reader's entry points, where callers have always found them (the reader
itself is the package ``leo.io.onnx``)."""

from leo.io.onnx.reader import load_onnx, network_from_onnx
from leo.io.onnx.table import OpsetRange, supported_ops

__all__ = ["OpsetRange", "load_onnx", "network_from_onnx", "supported_ops"]
