"""How many numbers a model file stores: the parameter count a user knows for their model.

leo's ``Network`` counts every entry of its dense lowering (a 5,194-parameter MNIST CNN
lowers to 79 million matrix entries; a MaxPool becomes selection matrices), which is not
the model's size; the file is. Counted: float tensors only (ONNX initializers, Constant
nodes and the values a sparse initializer stores; a TorchScript or ``torch.export``
module's parameters and buffers; a state_dict's tensors), so integer shapes and indices
are not parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: readers by file suffix; anything else is read as a PyTorch file (TorchScript or state_dict)
_ONNX, _EXPORTED = ".onnx", ".pt2"


def file_parameters(path: str | Path) -> int | None:
    """The float numbers stored in the model file at ``path``; None when it cannot be read
    (the caller then says nothing rather than a wrong count)."""
    p = Path(path)
    readers = {_ONNX: _onnx, _EXPORTED: _exported}
    try:
        return readers.get(p.suffix.lower(), _torch)(p)
    except Exception:  # noqa: BLE001 - a count is a courtesy: an unreadable file gives none
        return None


def _onnx(path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    tensors = list(model.graph.initializer)
    tensors += [a.t for node in model.graph.node if node.op_type == "Constant"
                for a in node.attribute if a.name == "value"]
    tensors += [t.values for t in model.graph.sparse_initializer]  # a sparse matrix stores its nonzeros
    return sum(_float_size(numpy_helper.to_array(t)) for t in tensors)


def _exported(path: Path) -> int:
    import torch

    program = torch.export.load(str(path))
    return _tensors(list(program.state_dict.values()) + list(getattr(program, "constants", {}).values()))


def _torch(path: Path) -> int:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
        return _tensors(list(module.parameters()) + list(module.buffers()))
    except RuntimeError:  # not a TorchScript archive: a state_dict checkpoint
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        return _tensors(list(state.values()) if isinstance(state, dict) else [])


def _tensors(values: list[Any]) -> int:
    """Float tensors' sizes, each storage counted once (a tied weight is one parameter)."""
    import torch

    seen: set[int] = set()
    total = 0
    for t in values:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel()
    return total


def _float_size(array: Any) -> int:
    return int(array.size) if array.dtype.kind == "f" else 0
