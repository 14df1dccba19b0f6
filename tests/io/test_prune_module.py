"""The user's own nn.Module pruned where leo proved channels dead (leo.io.prune_module).

Truth is independent of the pruner: dead channels are planted (a large negative
BatchNorm bias) and confirmed zero by the original module's own forward on sampled
points; the pruned module is compared with the original by torch on sampled points;
removals the proof does not justify (a live channel coupled through a residual Add, a
depthwise conv's own output, a grouped conv) must leave the module's shapes as they were.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import leo
from leo.io.graph import conv_module_path
from leo.io.prune_module import dead_channels_from_report, prune_module
from leo.io.torch_io import from_module
from leo.stability.stages import StabilityOptions

pytest.importorskip("torch_pruning")  # the ``prune`` extra (in ``test``); imported lazily by leo

torch.set_num_threads(1)
SHAPE = (1, 4, 4)
LO, HI = np.zeros(SHAPE), np.ones(SHAPE)
FAST = StabilityOptions(time_budget=15.0)  # planted channels are proven by interval bounds alone


class Block(nn.Module):
    """A residual block: relu(bn(conv(x)) + x)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)) + x)


class Net(nn.Module):
    """conv-BN-ReLU stem, conv-BN-ReLU, a residual block, Flatten, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.c2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.block = Block(6)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn2(self.c2(self.stem(x))))
        return self.head(self.block(h))


def _planted() -> Net:
    """Stem channels 1 and 3 dead (they feed c2 only); c2 channel 2 dead but it feeds the
    residual Add, where block.conv's channel 2 is live."""
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for bn in (net.stem[1], net.bn2, net.block.bn):  # non-trivial BatchNorm statistics
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
        net.stem[1].bias[1] = net.stem[1].bias[3] = -100.0
        net.bn2.bias[2] = -100.0
        net.block.bn.bias[2] = 50.0  # block.conv's channel 2 stays live
    return net.eval()


def _points(n: int = 2000) -> torch.Tensor:
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(1))


def _zero_channels(module: nn.Module, relu: nn.Module | None, x: torch.Tensor) -> set[int]:
    """Channels of ``relu``'s output that are 0 at every point (the module's own forward)."""
    seen: list[torch.Tensor] = []
    handle = relu.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        module(x)
    handle.remove()
    out = seen[0]
    return {c for c in range(out.shape[1]) if bool((out[:, c] == 0).all())}


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def _tolerance(module: nn.Module, x: torch.Tensor) -> float:
    """float32 rounding, relative to the outputs' size."""
    with torch.no_grad():
        return 1e-5 * (1 + float(module(x).abs().max()))


def _analysed(module: nn.Module) -> tuple[object, dict[int, tuple[int, ...]]]:
    net = from_module(module, input_shape=SHAPE)
    return net, dead_channels_from_report(net, leo.verify(module, LO, HI, FAST))


def test_conv_layers_name_their_module() -> None:
    net = from_module(_planted(), input_shape=SHAPE)
    named = [dict(ly.structure or {}).get("module") for ly in net.layers]
    # stem conv, c2, the block (its conv's output is summed with x: no one conv's layer), head
    assert named == ["stem.0", "c2", None, None]
    modules = {name: None for name in ["", "layers", "layers.0", "layers.0.seq", "layers.0.seq.0",
                                        "layers.0.conv", "shared", "stem", "stem.0"]}
    assert conv_module_path(modules, "/layers.0/seq/seq.0/Conv") == "layers.0.seq.0"
    assert conv_module_path(modules, "/layers.0/conv/Conv") == "layers.0.conv"
    assert conv_module_path(modules, "/stem/0/Conv") == "stem.0"  # a scripted module's scopes
    assert conv_module_path(modules, "/shared_1/Conv") == "shared"  # a second call
    assert conv_module_path(modules, "/Conv") is None and conv_module_path(modules, "/other/Conv") is None


def test_planted_dead_channels_removed_same_class_equal_outputs() -> None:
    module = _planted()
    before = copy.deepcopy(module.state_dict())
    net, dead = _analysed(module)
    x = _points()
    assert set(dead.get(1, ())) >= {1, 3}, dead  # the planted ones are proven
    result = prune_module(module, net, dead, LO, HI, points=2000)
    pruned = result.module
    assert type(pruned) is Net and pruned is not module
    removed = set(result.removed["stem.0"])
    assert removed >= {1, 3}
    assert removed <= _zero_channels(module, module.stem[2], x)  # nothing live was removed
    assert pruned.stem[0].out_channels == 4 - len(removed) == pruned.stem[1].num_features
    assert pruned.c2.in_channels == 4 - len(removed)
    # c2's channel 2 is dead but coupled with block.conv's live channel 2 by the residual Add
    assert 2 in dead[2] and pruned.c2.out_channels == 6 and pruned.block.conv.out_channels == 6
    assert any(s.module == "c2" and 2 in s.channels and "block.conv" in s.reason for s in result.skipped)
    assert _max_diff(module, pruned, x) <= _tolerance(module, x)
    assert result.max_diff <= result.tolerance and result.points >= 2000
    # the user's module is untouched
    after = module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert module.stem[0].out_channels == 4 and not module.training


def test_compress_structured_gives_back_the_users_class() -> None:
    module = _planted()
    result = leo.compress(module, LO, HI, FAST, form="structured", check_points=2000)
    pruned = result.module()
    assert type(pruned) is Net and result.pruned is not None
    assert pruned.stem[0].out_channels <= 2
    x = _points()
    assert _max_diff(module, pruned, x) <= _tolerance(module, x)
    assert result.module() is not pruned  # a fresh copy each time
    # other inputs keep leo's own module
    other = leo.compress(result.original, LO, HI, FAST, form="structured", check_points=500)
    assert other.pruned is None and type(other.module()) is not Net


def _chain(groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1, groups=groups), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(64, 2)).eval()


def test_depthwise_prunes_only_channels_dead_on_both_sides() -> None:
    torch.manual_seed(0)
    module = _chain(groups=4)
    with torch.no_grad():
        module[1].bias[1] = module[1].bias[2] = -50.0  # dead after the first conv
        module[4].bias[1] = -50.0  # the depthwise conv's channel 1 dead too
        module[4].bias[2] = 5.0  # channel 2: zero input, but relu(bias) = 5 is live
    net, dead = _analysed(module)
    x = _points()
    result = prune_module(module, net, dead, LO, HI, points=2000)
    pruned = result.module
    assert result.removed == {"0": (1,), "3": (1,)}
    assert pruned[0].out_channels == pruned[3].in_channels == pruned[3].out_channels == pruned[3].groups == 3
    assert 2 not in _zero_channels(module, module[5], x)  # the depthwise channel 2 is live
    assert any(s.module == "0" and s.channels == (2,) and "of 3" in s.reason for s in result.skipped)
    assert _max_diff(module, pruned, x) <= _tolerance(module, x)


def test_grouped_conv_is_left_alone() -> None:
    torch.manual_seed(0)
    module = _chain(groups=2)
    with torch.no_grad():
        module[1].bias[1] = -50.0
        module[4].bias[3] = -50.0
    net, dead = _analysed(module)
    assert 1 in dead[1] and 3 in dead[2]
    result = prune_module(module, net, dead, LO, HI, points=500)
    assert result.removed == {}
    assert {s.module for s in result.skipped} == {"0", "3"}
    assert all("grouped conv 3 (groups=2)" in s.reason for s in result.skipped)
    assert result.module[0].out_channels == 4 and result.module[3].out_channels == 4


class PreActivationReadTwice(nn.Module):
    """The conv's output before its ReLU also reaches the head: a dead ReLU channel is
    not a zero channel there."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(2 * 3 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return self.head(torch.cat([torch.relu(y), y], 1).flatten(1))


class BatchNormAfterReLU(nn.Module):
    """A BatchNorm after the ReLU maps the zero channel to a constant that the next conv reads."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.bn(torch.relu(self.conv(x)))).flatten(1)


@pytest.mark.parametrize("cls", [PreActivationReadTwice, BatchNormAfterReLU])
def test_a_dead_channel_that_is_not_zero_downstream_is_kept(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    module = cls().eval()
    with torch.no_grad():
        module.conv.bias[1] = -100.0
        module.bn.bias[1] = 3.0  # nonzero after the BatchNorm
    net = from_module(module, input_shape=SHAPE)
    layer = next(k for k, ly in enumerate(net.layers, 1) if dict(ly.structure or {}).get("module") == "conv")
    x = _points()
    result = prune_module(module, net, {layer: (1,)}, LO, HI, points=500)
    assert result.removed == {} and result.module.conv.out_channels == 3
    assert [s.channels for s in result.skipped] == [(1,)]
    assert _max_diff(module, result.module, x) == 0.0


def test_a_channel_that_is_not_dead_is_an_internal_error_never_a_result() -> None:
    """prune_module trusts its dead-channel list; the check on the box catches a wrong one."""
    module = _planted()
    net = from_module(module, input_shape=SHAPE)
    live = min(set(range(4)) - _zero_channels(module, module.stem[2], _points()))
    with pytest.raises(RuntimeError, match="differs from the original"):
        prune_module(module, net, {1: (live,)}, LO, HI, points=500)


def test_a_conv_called_twice_is_skipped() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Conv2d(1, 2, 3, padding=1)
            self.shared = nn.Conv2d(2, 2, 3, padding=1)
            self.head = nn.Linear(32, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.shared(torch.relu(self.shared(torch.relu(self.first(x))))))
            return self.head(h.flatten(1))

    module = Shared().eval()
    net = from_module(module, input_shape=SHAPE)
    named = [dict(ly.structure or {}).get("module") for ly in net.layers]
    assert named == ["first", "shared", "shared", None]
    result = prune_module(module, net, {2: (0,)}, LO, HI, points=200)
    assert result.removed == {} and "runs 2 times" in result.skipped[0].reason


class Branches(nn.Module):
    """Pooling after the ReLU, then two branches joined by Concat."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.left = nn.Conv2d(4, 3, 1)
        self.right = nn.Conv2d(4, 2, 1)
        self.head = nn.Linear(5 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.stem(x)))
        h = torch.cat([torch.relu(self.left(h)), torch.relu(self.right(h))], 1)
        return self.head(h.flatten(1))


def test_pooling_and_concat_keep_a_dead_channel_dead() -> None:
    torch.manual_seed(0)
    module = Branches().eval()
    with torch.no_grad():
        module.stem.bias[2] = -100.0
        module.left.bias[1] = -100.0
        module.right.bias[0] = -100.0
    net, dead = _analysed(module)
    assert 2 in dead[1]
    result = prune_module(module, net, dead, LO, HI, points=2000)
    pruned, x = result.module, _points()
    assert set(result.removed["stem"]) >= {2}  # through the MaxPool
    assert pruned.stem.out_channels == 4 - len(result.removed["stem"]) == pruned.left.in_channels \
        == pruned.right.in_channels
    # Torch-Pruning 1.6 couples left's channel 1 with right's channel 1 (and right's 0 with
    # left's 0) through the Concat, channels not proven dead: each is removed or skipped
    for name, channel in (("left", 1), ("right", 0)):
        assert (channel in result.removed.get(name, ())) != any(
            s.module == name and channel in s.channels for s in result.skipped)
    kept = pruned.left.out_channels + pruned.right.out_channels
    assert pruned.head.in_features == 4 * kept
    assert _max_diff(module, pruned, x) <= _tolerance(module, x)
    # TP's graph leaves no hooks behind, and the result pickles
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in pruned.modules())
    import pickle

    again = pickle.loads(pickle.dumps(pruned))
    assert _max_diff(pruned, again, x) == 0.0


class AddsTheInput(nn.Module):
    """A dead channel summed with the module's input, which no pruning can shrink."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.head = nn.Linear(2 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((torch.relu(self.conv(x)) + x).flatten(1))


def test_a_dead_channel_added_to_the_input_is_kept() -> None:
    torch.manual_seed(0)
    module = AddsTheInput().eval()
    with torch.no_grad():
        module.conv.bias[1] = -100.0
    lo, hi = np.zeros((2, 4, 4)), np.ones((2, 4, 4))
    net = from_module(module, input_shape=(2, 4, 4))
    result = prune_module(module, net, {1: (1,)}, lo, hi, points=200)
    assert result.removed == {} and "Add" in result.skipped[0].reason
    assert result.module.conv.out_channels == 2
