"""ONNX in: piecewise-linear networks as torch.onnx and verification benchmarks (VNN-COMP,
ERAN) write them, in any opset.

``values`` holds the walk's tensors, ``table`` which reader reads each op in each
opset, and one module per op family does the reading: ``arithmetic`` (Gemm, MatMul,
elementwise, Relu, Clip, BatchNormalization), ``spatial`` (Conv, ConvTranspose, pools),
``layout`` (reshapes, slices, Split, Concat, Pad), ``tensors`` (constants, Cast,
Identity), ``reduce`` (Expand, ReduceSum, ReduceMean); ``reader`` walks the graph.
"""

from leo.io.onnx.reader import load_onnx, network_from_onnx
from leo.io.onnx.table import OpsetRange, supported_ops

__all__ = ["OpsetRange", "load_onnx", "network_from_onnx", "supported_ops"]
