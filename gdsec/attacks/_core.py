"""The attack contract, written once, and the helpers every attack shares.

:func:`attack_contract` wraps an attack function ``(model, x, y, [eps,] *, settings...)``. Before the
attack runs it checks the model, ``x`` (values in [0, 1], batch axis first) and ``y`` (labels in
range), ``eps`` (bounded attacks) and every keyword setting (one checker per setting, unknown
settings are a ``ValueError``), detaches ``x`` and, for bounded attacks, returns a copy of ``x``
when ``eps == 0``. The attack then runs with the model in eval mode (the mode it had is restored).
Its output is checked to have the shape and dtype of ``x``, is detached, clipped to [0, 1] and, for
bounded attacks, projected onto the ``eps``-ball. Attacks take gradients with
:func:`input_gradient` (``torch.autograd.grad`` with respect to the input), so the parameters'
``.grad`` are never touched.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gdsec.attacks.settings import Checker
from gdsec.models import eval_mode
from gdsec.validation import (
    check_keywords,
    check_labels,
    check_model,
    check_norm,
    check_number,
    check_unit_tensor,
)

TINY = 1e-12
#: Targeted attacks (APGD-T, FAB-T) try the top-9 other classes by clean logits, as AutoAttack does.
TOP_TARGETS = 9


def target_count(n_classes: int) -> int:
    """How many target classes a targeted attack tries: the runners-up, at most :data:`TOP_TARGETS`.

    Used in chapters 6, 8 and 10.
    """
    return min(TOP_TARGETS, n_classes - 1)


def runner_up_targets(clean_logits: torch.Tensor) -> list[torch.Tensor]:
    """Per row, the target classes to try in turn: the clean logits' runners-up, best first.

    Used in chapters 6, 8 and 10.
    """
    ranked = clean_logits.argsort(dim=1, descending=True)
    return [ranked[:, rank] for rank in range(1, target_count(clean_logits.shape[1]) + 1)]


#: A per-row objective on logits: ``(logits, y) -> (N,)``.
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class AttackSpec:
    """Facts about one attack: bounded (an ``eps``-ball) or minimal-perturbation (L2), randomised, settings.

    Taught in chapter 5.
    """

    fn: Callable[..., torch.Tensor]
    bounded: bool
    randomised: bool
    settings: tuple[str, ...]


def checked_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``x``, checked to be a (N, n_classes) matrix. Used in chapter 8."""
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"model must map x to logits of shape (N, n_classes), got {getattr(out, 'shape', out)}"
        )
    return out


def check_attack_inputs(model: object, x: object, y: object | None) -> int:
    """Validate model, x (values in [0, 1], batch first) and y; return the number of classes. Used in chapter 8."""
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    with torch.no_grad(), eval_mode(model):  # type: ignore[arg-type]
        n_classes = checked_logits(model, x[:1]).shape[1]  # type: ignore[arg-type, index]
    if n_classes < 2:
        raise ValueError(f"model must output at least 2 logits per row, got {n_classes}")
    if y is not None:
        check_labels("y", y, n=x.shape[0], n_classes=n_classes)  # type: ignore[union-attr]
    return n_classes


def attack_contract(
    *, bounded: bool, **settings: Checker
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorator applying the attack contract (see the module docstring) to an attack function.

    ``bounded=True`` for attacks with an ``eps`` budget (fourth positional argument, with a ``norm``
    setting or L-infinity); ``settings`` maps each keyword setting to its checker. The wrapped
    function carries its :class:`AttackSpec` as ``.spec``. Used in chapter 5.
    """

    def decorate(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        signature = inspect.signature(fn)
        names = tuple(
            p.name
            for p in signature.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        )
        if set(names) != set(settings):
            raise TypeError(
                f"{fn.__name__}: checkers {sorted(settings)} must match its settings {sorted(names)}"
            )

        @functools.wraps(fn)
        def attack(*args: Any, **kwargs: Any) -> torch.Tensor:
            positional = [p for p in signature.parameters if p not in names]
            check_keywords(
                fn.__name__, {k: v for k, v in kwargs.items() if k not in positional}, names
            )
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            check_attack_inputs(given["model"], given["x"], given["y"])
            for name, checker in settings.items():
                given[name] = checker(name, given[name])
            x = given["x"] = given["x"].detach()
            if bounded:
                eps = given["eps"] = check_number("eps", given["eps"], low=0.0)
                if eps == 0:
                    return x.clone()
            with eval_mode(given["model"]):
                out = fn(**given)
            if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
                raise RuntimeError(
                    f"{fn.__name__} broke the attack contract: its output must match x in shape and dtype"
                )
            out = out.detach()
            if bounded:
                return project(x, out, eps, given.get("norm", "inf"))
            return out.clamp(0.0, 1.0)

        attack.spec = AttackSpec(attack, bounded, "seed" in names, names)  # type: ignore[attr-defined]
        return attack

    return decorate


# --------------------------------------------------------------------------- shared helpers


def row_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-row L-infinity ("inf") or L2 ("2") norm of ``t``, shaped (N,). Used in chapter 5."""
    flat = t.reshape(t.shape[0], -1)
    return flat.abs().amax(1) if norm == "inf" else flat.norm(dim=1)


def per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (N,) vector so it broadcasts over the rows of ``like``. Used in chapter 5."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def steepest_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit step of steepest ascent: ``sign(grad)`` (L-inf) or ``grad / ||grad||_2`` (L2). Used in chapter 5."""
    if norm == "inf":
        return grad.sign()
    return grad / (per_row(row_norm(grad, "2"), grad) + TINY)


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str = "inf") -> torch.Tensor:
    """Project ``x_adv`` onto the L-inf or L2 ``eps``-ball around ``x``, then onto the [0, 1] box.

    Taught in chapter 5.
    """
    if norm == "inf":
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
    else:
        delta = x_adv - x
        factor = torch.clamp(eps / (row_norm(delta, "2") + TINY), max=1.0)
        x_adv = x + delta * per_row(factor, delta)
    return x_adv.clamp(0.0, 1.0)


def random_start(
    x: torch.Tensor, eps: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """A uniformly random point of the ``eps``-ball around ``x``, clipped to [0, 1]. Taught in chapter 5."""
    if norm == "inf":
        noise = (
            torch.rand(x.shape, generator=generator, dtype=x.dtype, device=generator.device) * 2 - 1
        ) * eps
    else:
        direction = torch.randn(
            x.shape, generator=generator, dtype=x.dtype, device=generator.device
        )
        direction = direction / (per_row(row_norm(direction, "2"), x) + TINY)
        radius = (
            torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=generator.device).pow(
                1.0 / x[0].numel()
            )
            * eps
        )
        noise = direction * per_row(radius, x)
    return project(x, x + noise.to(x.device), eps, norm)


def keep_best(
    best: torch.Tensor,
    best_score: torch.Tensor,
    x_new: torch.Tensor,
    new_score: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """In place: where ``new_score`` is lower, copy the row of ``x_new`` into ``best``; return that mask.

    ``rows`` (indices into ``best``) says which rows ``x_new`` and ``new_score`` hold; all by default.
    Used in chapter 5.
    """
    index = torch.arange(best.shape[0], device=best.device) if rows is None else rows
    better = new_score < best_score[index]
    best[index[better]] = x_new[better].detach()
    best_score[index[better]] = new_score[better].detach()
    return better


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row margin ``z_y - max_{k != y} z_k``: positive when correct, negative when fooled. Taught in chapter 5."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], -math.inf).amax(1)
    return true - others


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy of ``logits`` against ``y``. Used in chapter 5."""
    return nn.functional.cross_entropy(logits, y, reduction="none")


def dlr_loss(
    logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Difference-of-logits-ratio loss of Croce & Hein (2020), per row; higher means closer to fooled.

    Untargeted: ``-(z_y - max_{k != y} z_k) / (z_(1) - z_(3))`` with ``z_(i)`` the sorted logits.
    Targeted (``target`` given): ``-(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2)``; with three classes
    the denominator is ``z_(1) - z_(3)``. Both are invariant to scaling the logits. With two classes
    there is no third logit to normalise by, so the loss falls back to the negated margin
    ``-(z_y - z_other)``, which still never saturates. Used in chapter 8.
    """
    n_classes = logits.shape[1]
    rival = (
        logits.scatter(1, y[:, None], -math.inf).amax(1)
        if target is None
        else logits.gather(1, target[:, None]).squeeze(1)
    )
    gap = logits.gather(1, y[:, None]).squeeze(1) - rival
    if n_classes < 3:
        return -gap
    ranked = logits.sort(dim=1, descending=True).values
    third = ranked[:, 2] if target is None or n_classes < 4 else (ranked[:, 2] + ranked[:, 3]) / 2
    return -gap / (ranked[:, 0] - third + TINY)


def input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: Objective = cross_entropy
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, gradient of the summed per-row ``objective`` w.r.t. ``x``); parameter grads untouched.

    A model whose logits have no gradient path to ``x`` (computed outside autograd, or detached)
    has a zero gradient, not an error. Used in chapters 5 and 8.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = checked_logits(model, x)
        loss, grad = objective(logits, y).sum(), None
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return logits.detach(), torch.zeros_like(x) if grad is None else grad


def perturbation_norm(x: torch.Tensor, x_adv: torch.Tensor, *, norm: str = "2") -> torch.Tensor:
    """Per-row size of ``x_adv - x`` in the L-infinity ("inf") or L2 ("2") norm, shaped (N,). Taught in chapter 5."""
    norm = check_norm("norm", norm)
    if (
        not isinstance(x, torch.Tensor)
        or not isinstance(x_adv, torch.Tensor)
        or x.shape != x_adv.shape
    ):
        raise ValueError("x and x_adv must be tensors of the same shape")
    return row_norm((x_adv - x).detach(), norm)
