"""leo: certified-lossless compression of ReLU networks by MILP-proven stability.

Public API (everything else is internal):
    Network, Layer, mlp              the plain network type
    Box, make_box                    the input domain
    StabilityOptions, analyse        the stability analysis
    verify, compress                 one-call API on Networks, nn.Modules, paths or builtin:NAME
    as_network                       any of those as a Network (input_shape= where none is recorded)
    reduce                           turn a stability report into a smaller network
    load_network, save_network       PyTorch / TorchScript / ONNX in and out
    set_threads                      the one thread policy (torch, BLAS, HiGHS); default 1
    LeoInputError                    bad input, with a message saying how to fix it

The names are imported on first use (PEP 562), so that ``import leo.cli.main`` or ``leo property``
on an ONNX file does not pay for ``import torch`` (4-14 s on the shared machine) unless a
step needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_WHERE = {
    "Compression": "leo.api", "as_network": "leo.api", "compress": "leo.api", "verify": "leo.api",
    "Box": "leo.core.domain", "make_box": "leo.core.domain",
    "LeoInputError": "leo.errors",
    "load_network": "leo.io", "save_network": "leo.io",
    "Layer": "leo.core.network", "Network": "leo.core.network", "mlp": "leo.core.network",
    "StabilityOptions": "leo.stability.analysis", "analyse": "leo.stability.analysis",
    "set_threads": "leo.core.threads",
    "reduce": "leo.reduction.reduce",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from leo.api import Compression, as_network, compress, verify
    from leo.core.domain import Box, make_box
    from leo.errors import LeoInputError
    from leo.io import load_network, save_network
    from leo.core.network import Layer, Network, mlp
    from leo.stability.analysis import StabilityOptions, analyse
    from leo.core.threads import set_threads
    from leo.reduction.reduce import reduce


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access, and keep the name."""
    if name not in _WHERE:
        raise AttributeError(f"module 'leo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
