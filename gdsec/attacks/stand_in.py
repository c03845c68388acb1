"""The attacker's BPDA stand-in of any model the audit loads: :func:`bpda_stand_in` and :class:`StandIn`.

It tries, in order, what :mod:`gdsec.attacks.graphs` can search: the submodules of an
``nn.Module`` tree; the saved model inside a wrapper (a TorchScript or ``torch.fx`` child, searched
on its own input); the model as a graph (a ``torch.fx.GraphModule`` as it is, TorchScript through
PyTorch's TorchScript-to-export converter, a module through ``torch.export``); a scripted
``nn.Sequential`` layer by layer. It says which route worked, or why none did. Used in chapter 10.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import warnings
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import fx, nn
from torch._export.converter import TS2EPConverter

from gdsec.attacks.graphs import (
    straight_through_graph,
    straight_through_layers,
    straight_through_modules,
)
from gdsec.models import eval_mode
from gdsec.validation import check_model, check_seed

__all__ = ["StandIn", "bpda_stand_in"]

_CHATTY = ("torch._export", "torch.export", "torch.fx")  # loggers that warn while converting
_OPAQUE = (fx.GraphModule, torch.jit.ScriptModule)  # saved models: searched as a whole


class StandIn(NamedTuple):
    """:func:`bpda_stand_in`'s stand-in ``model`` (None if none), the ``located`` steps it bypasses,
    the ``random`` steps seen, and the ``route`` taken (or why nothing was built). Used in chapter 10."""

    model: nn.Module | None
    located: tuple[str, ...]
    random: tuple[str, ...]
    route: str


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch's export and conversion chatter (warnings and log lines) for the block."""
    levels = {logging.getLogger(n): logging.getLogger(n).level for n in _CHATTY}
    try:
        for log in levels:
            log.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in levels.items():
            log.setLevel(level)


def _graph_of(model: nn.Module, x: torch.Tensor) -> fx.GraphModule:
    """``model`` as a graph: itself, converted from TorchScript, or exported (batch dimension dynamic)."""
    if isinstance(model, fx.GraphModule):
        return model
    with _quiet(), eval_mode(model):
        if not isinstance(model, torch.jit.ScriptModule):
            shapes = ({0: torch.export.Dim("batch")},)  # the stand-in takes any batch
            return torch.export.export(model, (x,), dynamic_shapes=shapes, strict=False).module()
        graph = TS2EPConverter(model, (x,)).convert().module()
        with torch.no_grad():  # a converter's slip shows as a different output (unless random)
            first, again, converted = model(x), model(x), graph(x)
        if torch.equal(first, again) and not torch.allclose(first, converted):
            raise ValueError("the converted graph computes something else")
        return graph


def _scripted_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of a scripted ``nn.Sequential`` in call order, nested ones flattened (else ``[model]``)."""
    if getattr(model, "original_name", None) != "Sequential":
        return [model]
    return [layer for child in model.children() for layer in _scripted_layers(child)]


def _walk(model: nn.Module, x: torch.Tensor, seed: int) -> StandIn:
    """BPDA on a scripted ``nn.Sequential``'s layers, checked to reproduce its forward pass on ``x``."""
    layers = _scripted_layers(model)
    with torch.no_grad(), eval_mode(model):
        if len(layers) < 2 or not torch.equal(nn.Sequential(*layers)(x), model(x)):
            return StandIn(None, (), (), "not built: TorchScript module without locatable layers")
    twin, found = straight_through_layers(layers, x, seed=seed)
    return StandIn(twin if found else None, found, (), "the layers of a scripted nn.Sequential")


class _Recorder(nn.Module):
    """``inner`` unchanged, remembering the first input it is called with."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``inner(x)``, recording ``x``."""
        self.seen = x.detach() if self.seen is None else self.seen
        return self.inner(x)


def _inside(model: nn.Module, x: torch.Tensor, seed: int) -> StandIn | None:
    """A copy of wrapper ``model`` with the stand-ins of its saved-model children, or None."""
    names = [n for n, m in model.named_modules() if n and isinstance(m, _OPAQUE)]
    names = [n for n in names if not any(n.startswith(o + ".") for o in names)]
    if not names:
        return None
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    twin, located, random = copy.deepcopy(model, shared), [], []
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(twin.get_submodule(parent), child, _Recorder(twin.get_submodule(name)))
    with torch.no_grad(), eval_mode(twin):
        twin(x)
    for name in names:
        parent, _, child = name.rpartition(".")
        recorder = twin.get_submodule(name)
        inner = bpda_stand_in(recorder.inner, recorder.seen, seed=seed)
        setattr(twin.get_submodule(parent), child, inner.model or recorder.inner)
        located += [f"{name}: {step}" for step in inner.located]
        random += [f"{name}: {step}" for step in inner.random]
    route = "the saved model inside its wrapper"
    return StandIn(twin, tuple(located), tuple(random), route) if located else None


def bpda_stand_in(model: nn.Module, x: torch.Tensor, *, seed: int = 0) -> StandIn:
    """The attacker's BPDA stand-in of ``model`` (same forward pass), located on the probe rows ``x``.

    An ``nn.Module`` tree is searched submodule by submodule, then the saved models inside it, then
    as an exported graph; a ``torch.fx.GraphModule`` node by node; TorchScript as a converted
    graph, else layer by layer when it is a scripted ``nn.Sequential``. :class:`StandIn` says which
    route worked and what it located, or why nothing was built. ``x`` needs at least two rows. The
    model is never modified (the stand-in shares its parameters). Used in chapter 10.
    """
    check_model("model", model)
    x, seed = x.detach(), check_seed(seed)
    if not isinstance(model, _OPAQUE):
        twin, found = straight_through_modules(model, x, seed=seed)
        if found:
            return StandIn(twin, found, (), "submodules of the nn.Module tree")
        inside = _inside(model, x, seed)
        if inside is not None:
            return inside
    script = isinstance(model, torch.jit.ScriptModule)
    route = "graph converted from TorchScript" if script else "graph exported from the module"
    route = "torch.fx graph" if isinstance(model, fx.GraphModule) else route
    try:
        graph = _graph_of(model, x)
    except Exception as error:  # export and conversion fail in many ways inside torch
        why = f"not built: no graph could be captured ({type(error).__name__})"
        return _walk(model, x, seed) if script else StandIn(None, (), (), why)
    twin, found, random = straight_through_graph(graph, x, seed=seed)
    if not found:
        return StandIn(None, (), random, f"{route}: no step blocks the input gradient")
    return StandIn(twin, found, random, route)
