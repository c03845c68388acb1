"""BPDA wherever the step that blocks the gradient hides: an ``nn.Module`` tree, a graph, TorchScript.

Stand-ins for :func:`gdsec.attacks.stand_in.bpda_stand_in`: the same forward pass, with the straight-through rule
(:func:`gdsec.attacks.checks.straight_through_grad`) backward through every step that depends on
the input but passes back no gradient (rounding, comparisons and casts, ``argmax``, masks,
``detach``), found by measuring on probe rows in submodules (:func:`straight_through_modules`) or
graph nodes (:func:`straight_through_graph`); random steps are left to EOT. Used in chapter 10.
"""

from __future__ import annotations

import copy
import itertools
import warnings

import torch
from torch import fx, nn

from gdsec.attacks.checks import StraightThrough, straight_through_grad
from gdsec.models import eval_mode
from gdsec.streams import random_stream
from gdsec.validation import check_model, check_seed

__all__ = [
    "RANDOM_OPS",
    "straight_through_graph",
    "straight_through_layers",
    "straight_through_modules",
]

#: Substrings of an operation's name that mark it random (its randomness is EOT's, not BPDA's).
RANDOM_OPS = ("rand", "normal", "bernoulli", "dropout", "multinomial", "poisson", "uniform")


def _float(value: object) -> bool:
    """Whether ``value`` is a floating-point tensor."""
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _varies(value: torch.Tensor) -> bool:
    """Whether the rows of ``value`` differ (its value depends on the input, not a constant)."""
    return value.dim() > 0 and len(value) > 1 and bool((value != value[:1]).any())


def _no_gradient(out: torch.Tensor, leaves: list[torch.Tensor], generator: torch.Generator) -> bool:
    """Whether ``out`` passes back None or an exactly zero gradient (random cotangent) to ``leaves``."""
    if not out.requires_grad or not leaves:
        return True
    cotangent = torch.randn(
        out.shape, generator=generator, dtype=out.dtype, device=generator.device
    ).to(out.device)
    grads = torch.autograd.grad(out, leaves, cotangent, allow_unused=True)
    return all(g is None or not bool(g.ne(0).any()) for g in grads)


class _Locator(fx.Interpreter):
    """Runs a graph on probe rows with only the input differentiable, bypassing as it goes."""

    def __init__(self, module: fx.GraphModule, generator: torch.Generator) -> None:
        super().__init__(module, garbage_collect_values=False)  # _source reads any ancestor
        self.generator, self.bypassed, self.random = generator, {}, []
        self.derived: set[fx.Node] = set()

    def get_attr(self, target, args, kwargs):  # noqa: ANN001, ANN201 (fx's signature)
        """Parameters and buffers, detached: gradients are measured from the input only."""
        value = super().get_attr(target, args, kwargs)
        return value.detach() if isinstance(value, torch.Tensor) else value

    def call_module(self, target, args, kwargs):  # noqa: ANN001, ANN201
        """A submodule called with its own parameters and buffers detached."""
        module = self.fetch_attr(target)
        state = dict(itertools.chain(module.named_parameters(), module.named_buffers()))
        state = {k: v.detach() for k, v in state.items()}
        return torch.func.functional_call(module, state, tuple(args), dict(kwargs))

    def run_node(self, n: fx.Node) -> object:
        """The node's value, straight-through when it depends on the input but passes back no gradient."""
        out = super().run_node(n)
        if any(word in str(n.target).lower() for word in RANDOM_OPS):
            self.random.append(n.name)  # random values do not depend on the input's values
            return out
        if n.op == "placeholder" or any(a in self.derived for a in n.all_input_nodes):
            self.derived.add(n)
        if n.op in ("placeholder", "get_attr", "output") or n not in self.derived:
            return out
        source = self._source(n, out) if _float(out) and self._blocked(n, out) else None
        if source is None:
            return out
        self.bypassed[n.name] = (source.name, str(n.target))
        return straight_through_grad(out, self.env[source])

    def _blocked(self, n: fx.Node, out: torch.Tensor) -> bool:
        """Whether node ``n`` (float ``out``) depends on the input but passes back no gradient: none
        at all and rows that differ or a discrete input (``onehot(argmax)``), or rows that differ and
        an exactly zero vector-Jacobian product (rounding; a product with 0 has equal rows)."""
        if not out.requires_grad:
            discrete = [self.env.get(a) for a in n.all_input_nodes if a in self.derived]
            return _varies(out) or any(
                isinstance(v, torch.Tensor) and not _float(v) for v in discrete
            )
        if not _varies(out):
            return False
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        leaves: list[torch.Tensor] = []
        args, kwargs = fx.node.map_aggregate(
            (args, kwargs),
            lambda v: (
                leaves.append(v.detach().requires_grad_(True)) or leaves[-1]
                if isinstance(v, torch.Tensor) and v.requires_grad
                else v
            ),
        )
        return _no_gradient(getattr(self, n.op)(n.target, args, kwargs), leaves, self.generator)

    def _source(self, n: fx.Node, out: torch.Tensor) -> fx.Node | None:
        """The nearest ancestor of ``n`` that is differentiable and shaped like ``out``."""
        queue, seen = list(n.all_input_nodes), set()
        for a in queue:  # breadth first: the queue grows as it is read
            value = self.env.get(a)
            if _float(value) and value.requires_grad and value.shape == out.shape:
                return a
            queue += [b for b in a.all_input_nodes if b not in seen and not seen.add(b)]
        return None


def straight_through_graph(
    module: fx.GraphModule, x: torch.Tensor, *, seed: int = 0
) -> tuple[fx.GraphModule, tuple[str, ...], tuple[str, ...]]:
    """A copy of graph ``module`` with BPDA through every node that blocks the input gradient.

    Runs the graph on ``x`` (a few probe rows) and returns the copy (parameters shared), the
    bypassed nodes (``"name (op)"``) and the random ones. Used in chapter 10.
    """
    if not isinstance(module, fx.GraphModule):
        raise ValueError(f"module must be a torch.fx.GraphModule, got {type(module).__name__}")
    locator = _Locator(module, random_stream(check_seed(seed), "attacks.graphs.cotangent"))
    with torch.enable_grad():
        locator.run(x.detach().clone().requires_grad_(True))
    with warnings.catch_warnings():  # torch's own pytree deprecation, raised while copying
        warnings.simplefilter("ignore", FutureWarning)
        graph = copy.deepcopy(module.graph)
    nodes, swapped = {n.name: n for n in graph.nodes}, {}
    for name, (source, _) in locator.bypassed.items():  # topological order: sources come first
        node = nodes[name]
        with graph.inserting_after(node):
            bypass = graph.call_function(
                straight_through_grad, (node, swapped.get(source, nodes[source]))
            )
        node.replace_all_uses_with(bypass, delete_user_cb=lambda user, b=bypass: user is not b)
        swapped[name] = bypass
    graph.lint()
    located = tuple(f"{name} ({op})" for name, (_, op) in locator.bypassed.items())
    return fx.GraphModule(module, graph), located, tuple(locator.random)


def _blocks(layer: nn.Module, h: torch.Tensor, generator: torch.Generator) -> bool:
    """Whether ``layer`` (parameter-free, shape-keeping) on ``h`` is random or passes back no gradient."""
    if any(True for _ in layer.parameters()):
        return False
    h = h.detach().requires_grad_(True)
    with torch.enable_grad():
        out = layer(h)
    if not _float(out) or out.shape != h.shape:
        return False
    with torch.no_grad():
        random = not torch.equal(out, layer(h))
    return random or _no_gradient(out, [h], generator)


def straight_through_modules(
    model: nn.Module, x: torch.Tensor, *, seed: int = 0
) -> tuple[nn.Module, tuple[str, ...]]:
    """A copy of ``model`` (parameters shared) with its blocking submodules in :class:`StraightThrough`.

    Forward hooks record each submodule's first input on ``x``; a parameter-free, shape-keeping
    submodule that is random or passes back no gradient is wrapped (the innermost when they nest).
    Returns the copy and the wrapped submodules' names (``model`` itself and ``()`` when none).
    Used in chapter 10.
    """
    check_model("model", model)
    generator, inputs = random_stream(check_seed(seed), "attacks.graphs.cotangent"), {}

    def record(name: str, args: tuple) -> None:
        if name not in inputs and args and _float(args[0]):
            inputs[name] = args[0].detach()

    handles = [  # TorchScript takes no hooks: bpda_stand_in searches it as a whole
        m.register_forward_pre_hook(lambda _, args, n=n: record(n, args))
        for n, m in model.named_modules()
        if n and not isinstance(m, torch.jit.ScriptModule)
    ]
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    with eval_mode(model):
        found = [
            n for n, m in model.named_modules() if n in inputs and _blocks(m, inputs[n], generator)
        ]
    found = [n for n in found if not any(o.startswith(n + ".") for o in found)]
    if not found:
        return model, ()
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    twin = copy.deepcopy(model, shared)
    for name in found:
        parent, _, child = name.rpartition(".")
        holder = twin.get_submodule(parent)
        setattr(holder, child, StraightThrough(holder.get_submodule(child)))
    return twin, tuple(found)


def straight_through_layers(
    layers: list[nn.Module], x: torch.Tensor, *, seed: int = 0
) -> tuple[nn.Sequential, tuple[str, ...]]:
    """``layers`` called in order on ``x`` (TorchScript ones too) as an ``nn.Sequential``, the random
    or gradient-blocking parameter-free, shape-keeping ones in :class:`StraightThrough`, and their
    positions. Used in chapter 10.
    """
    generator, found, h = random_stream(check_seed(seed), "attacks.graphs.cotangent"), [], x
    for i, layer in enumerate(layers):
        with eval_mode(layer):
            found += [i] if _blocks(layer, h, generator) else []
            h = layer(h).detach()
    chain = (StraightThrough(m) if i in found else m for i, m in enumerate(layers))
    return nn.Sequential(*chain), tuple(str(i) for i in found)
