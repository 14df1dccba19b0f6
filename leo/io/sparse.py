"""Weight matrices written by their nonzeros, when that is the smaller file.

A reduced network's layers read through MaxPool selections, bypasses and folds: matrices
with a few nonzeros per row (a MaxPool's selection has one, a conv composed with it a
kernel's worth), whose dense form made a written model hundreds of times the user's. Both
writers (ONNX sparse initializers, TorchScript index/value buffers) store such a matrix as
(index, value) pairs, and leo's readers rebuild the same dense matrix, so a written model
reads back entry for entry.
"""

from __future__ import annotations

import numpy as np

from leo.io.conv import check_size


#: Matrices whose dense form is smaller than this are written dense whatever their nonzeros:
#: every ONNX consumer reads dense initializers, while several verifiers do not read sparse ones
#: (Marabou's ONNX parser looks weights up in ``graph.initializer`` only, and failed on a flat
#: compression of a small MNIST CNN), and below this size the dense form costs little.
SPARSE_MIN_BYTES = 1 << 20


def smaller_sparse(matrix: np.ndarray, value_bytes: int, index_bytes: int) -> bool:
    """Whether to write ``matrix`` by its nonzeros: its dense form is at least SPARSE_MIN_BYTES and
    (index, value) pairs of the nonzeros take fewer bytes."""
    dense = matrix.size * value_bytes
    return dense >= SPARSE_MIN_BYTES and np.count_nonzero(matrix) * (value_bytes + index_bytes) < dense


def dense_from_flat(shape: tuple[int, ...], flat_index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The dense float64 matrix of ``shape`` holding ``values`` at row-major ``flat_index``;
    refused (``TooLarge``) beyond the size leo lowers any op to."""
    check_size(int(shape[0]) if shape else 1, int(np.prod(shape[1:])) if len(shape) > 1 else 1)
    total = int(np.prod(shape))
    flat_index = np.asarray(flat_index, dtype=np.int64).reshape(-1)
    if flat_index.size != np.size(values) or (flat_index.size and (flat_index.min() < 0 or flat_index.max() >= total)):
        raise ValueError(f"{flat_index.size} indices for {np.size(values)} values do not fit a tensor of shape "
                         f"{list(shape)}")
    out = np.zeros(total)
    out[flat_index] = np.asarray(values, dtype=np.float64).reshape(-1)
    return out.reshape(shape)
