"""Reading and writing networks: PyTorch checkpoints, TorchScript, ONNX."""

from leo.io.files import atomic_write
from leo.io.load import load_network
from leo.io.save import save_network

__all__ = ["atomic_write", "load_network", "save_network"]
