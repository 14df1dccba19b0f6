"""leo: certified-lossless compression of ReLU networks by MILP-proven stability.

Public API (everything else is internal):
    Network, Layer, mlp              the plain network type
    Box, make_box                    the input domain
    StabilityOptions, analyse        the stability analysis
    verify, compress                 one-call API on Networks, nn.Modules or paths
    reduce                           turn a stability report into a smaller network
    load_network, save_network       PyTorch / TorchScript / ONNX in and out
    set_threads                      the one thread policy (torch, BLAS, HiGHS); default 1
    LeoInputError                    bad input, with a message saying how to fix it
"""

__version__ = "0.1.0"

from leo.api import Compression, compress, verify
from leo.domain import Box, make_box
from leo.errors import LeoInputError
from leo.io import load_network, save_network
from leo.network import Layer, Network, mlp
from leo.reduce import reduce
from leo.stability import StabilityOptions, analyse
from leo.threads import set_threads

__all__ = [
    "Box", "Compression", "Layer", "LeoInputError", "Network", "StabilityOptions", "analyse", "compress",
    "load_network", "make_box", "mlp", "reduce", "save_network", "set_threads", "verify",
]
