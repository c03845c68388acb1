"""Checkers for the input-attack exercises.

FGSM (ch. 5), the PGD projection (ch. 6), a straight-through quantiser (ch. 8).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gdsec import attacks, masking, models
from gdsec.exercises.core import (
    Failure,
    call,
    diagnose,
    grader,
    matches,
    mismatch,
    need_tensor,
    unchanged,
)

__all__ = ["grade_fgsm", "grade_pgd_project", "grade_straight_through"]


def _unit_rows(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Inputs in [0, 1] with some pixels exactly at 0 and 1, so clipping matters."""
    x = torch.rand(shape, generator=generator)
    edge = torch.rand(shape, generator=generator)
    return torch.where(
        edge < 0.15, torch.zeros_like(x), torch.where(edge > 0.85, torch.ones_like(x), x)
    )


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of ``model`` on (x, y)."""
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def _fgsm_cases(
    generator: torch.Generator,
) -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor, float]]:
    """Tabular and image inputs, several budgets including 0, models in eval and train mode."""
    cases = []
    for eps, tabular in ((0.1, True), (0.3, True), (0.0, True), (0.2, False)):
        seed = int(torch.randint(0, 10_000, (1,), generator=generator))
        if tabular:
            model, shape, n_classes = models.mlp(6, 3, hidden=8, seed=seed), (5, 6), 3
        else:
            model, shape, n_classes = (
                models.logistic_regression(64, 10, seed=seed),
                (4, 1, 8, 8),
                10,
            )
        x = _unit_rows(generator, shape)
        y = torch.randint(0, n_classes, (shape[0],), generator=generator)
        what = "tabular rows" if tabular else "8x8 images"
        cases.append((f"{shape[0]} {what} of shape {shape}, eps={eps}", model, x, y, eps))
    cases[1][1].train()  # the attack must leave a model in training mode in training mode
    return cases


@grader("fgsm", "gdsec.attacks.fgsm")
def grade_fgsm(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(model, x, y, eps) -> x_adv`` (FGSM, with the attack contract).

    Taught in chapter 5.
    """
    cases = _fgsm_cases(generator)
    for label, model, x, y, eps in cases:
        mode = model.training
        x_in, y_in = x.clone(), y.clone()
        got = need_tensor(
            call(fn, label, model, x_in, y_in, eps), label, shape=x.shape, floating=True
        )
        unchanged([x, y], [x_in, y_in], ["x", "y"], label)
        if x_in.requires_grad:
            raise Failure(
                f"for {label}: you switched on requires_grad on the caller's x: work on x.clone()"
            )
        if any(p.grad is not None for p in model.parameters()):
            raise Failure(
                f"for {label}: your attack left gradients in the model's parameters (.grad): an attack must not "
                "change the model; use torch.autograd.grad(loss, x_adv) instead of loss.backward()"
            )
        if model.training != mode:
            raise Failure(
                f"for {label}: the model came back in {'training' if model.training else 'eval'} mode: restore its mode"
            )
        if got.requires_grad:
            raise Failure(
                f"for {label}: return a detached tensor (x_adv.detach()), not one still attached to the graph"
            )
        if got.min() < 0 or got.max() > 1:
            raise Failure(
                f"for {label}: your result leaves the pixel range (values from {float(got.min()):.3g} to "
                f"{float(got.max()):.3g}): you forgot the clip to [0, 1] (.clamp(0, 1))"
            )
        expected = attacks.fgsm(model, x, y, eps)
        if not matches(got, expected):
            with torch.enable_grad():
                probe = x.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(probe), y), probe)
                pred = model(x).argmax(1)
                probe = x.clone().requires_grad_(True)
                (grad_pred,) = torch.autograd.grad(
                    nn.functional.cross_entropy(model(probe), pred), probe
                )
            before, after = _loss(model, x, y), _loss(model, got, y)
            hint = diagnose(
                got,
                [
                    (
                        "your step goes down the loss (x - eps * sign): the loss fell from "
                        f"{before:.3f} to {after:.3f}; an untargeted attack climbs it",
                        (x - eps * grad.sign()).clamp(0, 1),
                    ),
                    (
                        "you stepped along the raw gradient: FGSM uses its SIGN, so every pixel moves by exactly eps "
                        "(unless the box stops it)",
                        (x + eps * grad).clamp(0, 1),
                    ),
                    (
                        "you attacked the model's prediction instead of the true label y",
                        (x + eps * grad_pred.sign()).clamp(0, 1),
                    ),
                    ("your attack ignores eps: you returned x unchanged", x),
                ],
            )
            raise mismatch(
                label,
                expected,
                got,
                hint=hint or "x_adv = (x + eps * sign(grad_x loss)).clamp(0, 1)",
            )
    return f"{len(cases)} cases (tabular rows and images, eps 0 to 0.3, a model in training mode)"


def _projection(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The L-inf projection ``gdsec.attacks.pgd`` uses (``gdsec.attacks.project``), student argument order."""
    return attacks.project(x, x_adv, eps, "inf")


@grader("pgd_project", "the projection of gdsec.attacks.pgd")
def grade_pgd_project(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(x_adv, x, eps) -> projected`` (L-inf ball and [0, 1] box).

    Taught in chapter 6.
    """
    budgets = (0.1, 0.3, 0.05, 0.0)
    for eps in budgets:
        x = _unit_rows(generator, (4, 5))
        x_adv = x + (torch.rand(x.shape, generator=generator) * 2 - 1) * max(3 * eps, 0.2)
        label = (
            f"x of shape {tuple(x.shape)}, x_adv up to {max(3 * eps, 0.2):.2f} away "
            f"(outside [0, 1] in places), eps={eps}"
        )
        a_in, x_in = x_adv.clone(), x.clone()
        got = need_tensor(call(fn, label, a_in, x_in, eps), label, shape=x.shape, floating=True)
        unchanged([x_adv, x], [a_in, x_in], ["x_adv", "x"], label)
        expected = _projection(x_adv, x, eps)
        if matches(got, expected):
            continue
        size = float(attacks.perturbation_norm(x, got, norm="inf").max())
        delta = x_adv - x
        scale = (
            (eps / delta.abs().flatten(1).amax(1).clamp_min(1e-12)).clamp(max=1.0).reshape(-1, 1)
        )
        at_zero = (
            "at eps=0 the ball is the single point x, so the answer is x itself; you returned x_adv "
            "clipped to [0, 1] (no ball at all): do not skip or special-case the ball when eps is 0",
            x_adv.clamp(0, 1),
        )
        hint = diagnose(
            got,
            [
                *([at_zero] if eps == 0 else []),
                (
                    "you rescaled the whole perturbation: the L-inf projection clips each pixel on its own",
                    (x + delta * scale).clamp(0, 1),
                ),
                (
                    "you projected x onto a ball around x_adv: the arguments are (x_adv, x, eps)",
                    _projection(x, x_adv, eps),
                ),
                (
                    "you allowed only perturbations that brighten pixels: clip to [x - eps, x + eps]",
                    torch.minimum(torch.maximum(x_adv, x), x + eps).clamp(0, 1),
                ),
            ],
        )
        if hint is None and (got.min() < -1e-6 or got.max() > 1 + 1e-6):
            hint = (
                f"your result leaves the box [0, 1] (min {float(got.min()):.3g}, "
                f"max {float(got.max()):.3g}): clip to [0, 1] too"
            )
        elif hint is None and size > eps + 1e-6:
            hint = f"a pixel moved {size:.3g} from x, more than eps={eps}: clip x_adv to [x - eps, x + eps]"
        hint = (
            hint
            or "pixels inside the ball must stay where they are; only pixels outside move to its edge"
        )
        raise mismatch(label, expected, got, hint=hint)
    return f"{len(budgets)} cases (eps 0 to 0.3, iterates outside the ball and the box)"


@grader("straight_through", "gdsec.masking.bpda of gdsec.masking.Quantize")
def grade_straight_through(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(x, levels) -> quantized x`` with an identity gradient (BPDA's straight-through estimator).

    Taught in chapter 8.
    """
    settings = ((3, (4, 5)), (2, (3, 1, 8, 8)), (5, (6,)), (256, (2, 3)))
    for levels, shape in settings:
        x = torch.rand(shape, generator=generator, requires_grad=True)
        weights = torch.randn(shape, generator=generator)
        label = f"x of shape {shape}, levels={levels}"
        out = call(fn, label, x, levels)
        got = need_tensor(out, label, shape=shape, floating=True)
        expected = masking.bpda(nn.Sequential(masking.Quantize(levels)))(x)
        if not matches(got, expected):
            k = levels - 1
            hint = (
                diagnose(
                    got,
                    [
                        (
                            "your forward pass is not quantized: the value must be "
                            "round(x * (levels - 1)) / (levels - 1)",
                            x,
                        ),
                        (
                            "you used `levels` steps instead of `levels - 1` "
                            f"({levels} levels means {levels - 1} steps, from 0 to 1)",
                            torch.round(x * levels) / levels,
                        ),
                        (
                            "you rounded down (floor): quantize to the NEAREST level with torch.round",
                            torch.floor(x * k) / k,
                        ),
                    ],
                )
                or "forward: the quantized value, as masking.Quantize(levels) returns it"
            )
            raise mismatch(label, expected, got, hint=hint)
        if not got.requires_grad:
            raise Failure(
                f"for {label}: your output is cut off from x (no gradient flows back): detach only the "
                "rounding correction, x + (quantized - x).detach()"
            )
        (grad,) = torch.autograd.grad((got * weights).sum(), x, allow_unused=True)
        if grad is None or not grad.abs().sum() > 0:
            raise Failure(
                f"for {label}: the gradient through your function is zero: the backward pass went through "
                "torch.round; the straight-through trick passes the gradient of the identity"
            )
        if not matches(grad, weights):
            ratio = float((grad / weights).median())
            raise Failure(
                f"for {label}: the gradient must pass straight through (d out / d x = 1), "
                f"yours is about {ratio:.3g} times that"
            )
    return (
        f"{len(settings)} cases (2 to 256 levels, tabular and image shapes), values and gradients"
    )
