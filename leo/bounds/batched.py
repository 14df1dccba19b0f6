"""Bounds on many sub-boxes at once: the torch engine of ``leo.bounds.relaxation``'s formulas.

float64 tensors, one thread, one GEMM per layer for a whole batch of boxes: what
input-splitting branch and bound (``leo.bab.input_split``) bounds its leaves with. The
relaxation, the interval step and the back-substitution loop are the ones the numpy
engine (``leo.bounds.propagate``) uses; this module supplies batched array operations and,
on the final bound, optimised lower relu slopes (alpha-CROWN style: any slope in [0, 1] is
sound, so optimising them only tightens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from leo.bounds.relaxation import Step, back_substitute, interval_step, relu_outputs, relu_relaxation
from leo.core.network import Network
from leo.core.threads import using_threads

if TYPE_CHECKING:  # torch is imported where it is used: ``leo property`` and the CLI start without it
    import torch

#: Proven pre-activation bounds of a network's layers on the whole box (lower, upper arrays per layer,
#: e.g. from the stability analysis): valid on every sub-box, so a search may intersect its own with them.
Floors = Sequence[tuple[np.ndarray, np.ndarray]]
#: Gradient steps that optimise the lower relu slopes of the final bound (one slope per box, row
#: and unit).
ALPHA_STEPS = 8
ALPHA_RATE = 0.2


class Net:
    """The network's weights as float64 tensors, converted once per search, and ``floors``
    (whole-box bounds of the hidden layers, or none) likewise."""

    def __init__(self, net: Network, floors: Floors | None = None) -> None:
        import torch

        self.net = net
        self.layers = [({s: torch.from_numpy(np.array(w)) for s, w in ly.weights.items()},
                        torch.from_numpy(np.array(ly.bias)), ly.relu) for ly in net.layers]
        self.abs = [({s: w.abs() for s, w in ws.items()}, b.abs()) for ws, b, _ in self.layers]
        self.floors = None if floors is None else [
            (torch.from_numpy(np.array(lo, dtype=np.float64)), torch.from_numpy(np.array(hi, dtype=np.float64)))
            for lo, hi in floors]

    def steps(self, relax: list) -> list[Step]:
        """The layers with these relaxations, for ``back_substitute``."""
        return [Step(ws, b, self.abs[i][1], relax[i] if i < len(relax) else None)
                for i, (ws, b, _) in enumerate(self.layers)]


class TorchOps:
    """``BackOps`` on (B, m, n) coefficient blocks and (B, m) constants: one box per batch row."""

    @staticmethod
    def relax(a: torch.Tensor, relaxation: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        low, up, icpt = relaxation
        neg = a.clamp(max=0.0)
        a = (a - neg) * (low if low.dim() == 3 else low[:, None, :]) + neg * up[:, None, :]
        term = torch.bmm(neg, icpt[:, :, None])[..., 0]
        return a, term, -term

    @staticmethod
    def affine(a: torch.Tensor, bias: torch.Tensor, abs_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a @ bias, a.abs() @ abs_bias

    @staticmethod
    def through(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return a @ w

    @staticmethod
    def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    @staticmethod
    def concretize(a0: torch.Tensor | None, lo: torch.Tensor, hi: torch.Tensor) -> tuple:
        import torch

        if a0 is None:
            return 0.0, 0.0
        pos, neg = a0.clamp(min=0.0), a0.clamp(max=0.0)
        low = torch.bmm(pos, lo[:, :, None])[..., 0] + torch.bmm(neg, hi[:, :, None])[..., 0]
        return low, torch.bmm(a0.abs(), torch.maximum(lo.abs(), hi.abs())[:, :, None])[..., 0]


def _backsub(tn: Net, coeffs: dict, const: torch.Tensor, relax: list, lo: torch.Tensor,
             hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound lower bounds (B, m) of ``sum_s coeffs[s] . h_s + const`` over each box, and the
    input coefficients (B, m, n) of the linear bound (for branching and attack points)."""
    import torch

    low, a0 = back_substitute(TorchOps, tn.steps(relax), coeffs, const, lo, hi)
    if a0 is None:
        a0 = torch.zeros((lo.shape[0], const.shape[1], lo.shape[1]), dtype=lo.dtype)
    return low, a0


def interval(tn: Net, k: int, lo: torch.Tensor, hi: torch.Tensor, pre: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds (B, w) of layer ``k``'s pre-activation, widened for rounding."""
    weights, bias, _ = tn.layers[k]
    outs = [(lo, hi)] + [relu_outputs(l, u) if tn.layers[i][2] else (l, u) for i, (l, u) in enumerate(pre)]
    sources = [(*outs[s], (lambda v, w=w: v @ w.T), (lambda v, wa=tn.abs[k][0][s]: v @ wa.T))
               for s, w in weights.items()]
    return interval_step(bias, sources)


def layer_bounds(tn: Net, lo: torch.Tensor, hi: torch.Tensor) -> tuple[list, list]:
    """Proven pre-activation bounds of every ReLU layer, per box (the better of interval and
    back-substitution bounds; each layer's pass uses the layers before it), and relaxations.
    Only units open in some box of the batch get a back-substitution row. (Tried on ACAS Xu
    1_1 prop 3 and dropped: intersecting with the parent box's bounds, more boxes and no
    faster per box; forward symbolic intervals, 4x cheaper per box but 14x more boxes.)"""
    import torch

    pre: list = []
    relax: list = []
    b = lo.shape[0]
    for k, (weights, bias, relu) in enumerate(tn.layers[:-1]):
        zl, zu = interval(tn, k, lo, hi, pre)
        if tn.floors is not None and k < len(tn.floors):
            zl, zu = torch.maximum(zl, tn.floors[k][0]), torch.minimum(zu, tn.floors[k][1])
        open_ = torch.nonzero(((zl < 0) & (zu > 0)).any(dim=0))[:, 0]  # unstable in some box
        if k > 0 and len(open_):
            w = len(open_)
            eye = torch.eye(bias.shape[0], dtype=lo.dtype)[open_]
            obj = torch.cat([eye, -eye])
            coeffs = {s: (obj @ ws).expand(b, -1, -1) for s, ws in weights.items()}
            const = (obj @ bias).expand(b, -1)
            low, _ = _backsub(tn, coeffs, const, relax, lo, hi)
            zl, zu = zl.clone(), zu.clone()
            zl[:, open_] = torch.maximum(zl[:, open_], low[:, :w])
            zu[:, open_] = torch.minimum(zu[:, open_], -low[:, w:])
        pre.append((zl, zu))
        relax.append(relu_relaxation(zl, zu) if relu else None)
    return pre, relax


def row_bounds(tn: Net, lo: torch.Tensor, hi: torch.Tensor, g: torch.Tensor, h: torch.Tensor,
               alpha_steps: int = ALPHA_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower bounds (B, m) of the rows ``g @ y + h`` and the input coefficients (B, m, n) behind them."""
    pre, relax = layer_bounds(tn, lo, hi)
    weights, bias, relu = tn.layers[-1]
    b = lo.shape[0]
    if relu:  # the output itself passes a relu: bound its pre-activation, relax it too
        relax.append(relu_relaxation(*interval(tn, len(tn.layers) - 1, lo, hi, pre)))
        coeffs = {len(tn.layers): g.expand(b, -1, -1)}
    else:
        coeffs = {s: (g @ w).expand(b, -1, -1) for s, w in weights.items()}
        h = h + g @ bias
    const = h.expand(b, -1)
    low, a0 = _backsub(tn, dict(coeffs), const, relax, lo, hi)
    if alpha_steps <= 0 or bool((low > 0).all()):
        return low, a0
    return _optimised(tn, coeffs, const, relax, lo, hi, low, a0, alpha_steps)


def _optimised(tn: Net, coeffs: dict, const: torch.Tensor, relax: list, lo: torch.Tensor, hi: torch.Tensor,
               low: torch.Tensor, a0: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The final bound with lower relu slopes optimised by signed gradient ascent; per box
    and row the better of it and the plain bound (both sound)."""
    import torch

    m = const.shape[1]
    alphas = [None if r is None else r[0][:, None, :].expand(-1, m, -1).clone().requires_grad_(True) for r in relax]

    def bound() -> tuple[torch.Tensor, torch.Tensor]:
        rel = [None if r is None else (al.clamp(0.0, 1.0), r[1], r[2]) for r, al in zip(relax, alphas)]
        return _backsub(tn, dict(coeffs), const, rel, lo, hi)

    with torch.enable_grad():
        for _ in range(steps):
            value, _ = bound()
            grads = torch.autograd.grad(value.clamp(max=0.0).sum(), [al for al in alphas if al is not None])
            with torch.no_grad():
                for al, gr in zip([al for al in alphas if al is not None], grads):
                    al += ALPHA_RATE * gr.sign()
                    al.clamp_(0.0, 1.0)
    with torch.no_grad():
        value, _ = bound()
    better = value > low
    return torch.where(better, value, low), a0  # branching follows the plain bound's coefficients


def goal_bounds(net: Network, lo: np.ndarray, hi: np.ndarray, g: np.ndarray,
                h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sound lower bounds (B, m) of ``g @ y(x) + h`` over each box (lo, hi: (B, n)), and the
    input coefficients (B, m, n) of the linear bounds behind them."""
    import torch

    with using_threads(1):
        low, a0 = row_bounds(Net(net), *(torch.from_numpy(np.array(t, dtype=np.float64)) for t in (lo, hi, g, h)))
    return low.numpy(), a0.numpy()
