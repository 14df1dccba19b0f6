"""The network as an affine map of its input on one activation pattern: the region walks'
LPs (``leo.search.region_walk``) and the analysis's neighbourhood search read it."""

from __future__ import annotations

import functools
import operator

import numpy as np
import scipy.sparse as sp

from leo.bounds.propagate import SPARSE_KEEP, weight_operator
from leo.core.network import Network

Map = np.ndarray | sp.csr_matrix  # a layer's A in z = A x + c; sparse while the convs keep it so


def affine_maps(network: Network, layer: int, pattern: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(A, c)`` with ``z_k = A x + c`` for every layer ``k <= layer``, with the ReLUs of
    earlier layers fixed to ``pattern`` (1 passes, 0 blocks).

    On a 9,508-unit CNN this took 1.7 s a call, multiplying the input's identity map and
    the lowered convs as dense matrices: the input's map is now copied (exact), and convs
    multiply as sparse views (see ``_times``). Dense layers give the old maps bit for bit."""
    n = network.input_dim
    outs: list[tuple[Map | None, np.ndarray]] = [(None, np.zeros(n))]  # None: the input's map, I
    maps = []
    for k, lyr in enumerate(network.layers[: layer + 1]):
        terms = []
        c = np.array(lyr.bias, dtype=np.float64)
        for s, w in lyr.weights.items():
            a_in, c_in = outs[s]
            if a_in is None:  # from the input: w @ I is w, bit for bit, and w @ 0 adds nothing
                op = weight_operator(w)
                terms.append(op if sp.issparse(op) else np.array(w, dtype=np.float64))  # a copy: maps own theirs
            else:
                terms.append(_times(w, a_in))
                c += w @ c_in
        a = _sum(terms)
        maps.append((_dense(a), c))
        if k < layer:
            p = pattern[k] if lyr.relu else np.ones(lyr.width)
            outs.append((sp.csr_matrix(a.multiply(p[:, None])) if sp.issparse(a) else a * p[:, None], c * p))
    return maps


def _times(w: np.ndarray, a: Map) -> Map:
    """``w @ a``. A big sparse weight (a lowered conv) multiplies as its CSR view
    (``leo.bounds.propagate.weight_operator``: a twentieth of the dense product), and a sparse ``a``
    stays sparse while at most ``SPARSE_KEEP`` of it is nonzero; these sums run in another
    order than the dense product's (relative differences about 1e-16). A dense weight and a
    dense ``a`` multiply as before, so dense networks give the old maps bit for bit."""
    op = weight_operator(w)
    if sp.issparse(op) and sp.issparse(a):
        out = sp.csr_matrix(op @ a)
        return out.toarray() if out.nnz > SPARSE_KEEP * out.shape[0] * out.shape[1] else out
    return np.asarray(op @ a) if sp.issparse(op) or sp.issparse(a) else w @ a


def _sum(terms: list[Map]) -> Map:
    """The terms added in order (a layer reads one source or a few); sparse only if all are."""
    if all(sp.issparse(t) for t in terms):
        return sp.csr_matrix(functools.reduce(operator.add, terms))
    return functools.reduce(operator.add, (_dense(t) for t in terms))


def _dense(a: Map) -> np.ndarray:
    return a.toarray() if sp.issparse(a) else np.asarray(a)
