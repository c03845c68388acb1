"""Checker for the gradient-leakage exercise: the label of one example read off its gradient (ch. 9)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gdsec import leakage, models
from gdsec.exercises.core import Failure, call, describe, grader, not_none, unchanged

__all__ = ["grade_infer_label"]


def _as_int(value: object, label: str) -> int:
    """The student's answer as one int, or :class:`Failure`."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise Failure(
                f"for {label}: return ONE label (the batch holds one example), got {describe(value)}"
            )
        if value.is_floating_point():
            raise Failure(
                f"for {label}: return a class index (an int), got the float {describe(value)}"
            )
        value = int(value.item())
    if isinstance(value, bool) or not isinstance(value, int):
        raise Failure(f"for {label}: return the label as an int, got {describe(value)}")
    return value


def _cases(generator: torch.Generator) -> list[tuple[str, list[torch.Tensor], int, int]]:
    """Gradients of one example on MLPs and a logistic regression of several sizes, labels first and last."""
    cases = []
    settings = (
        (10, 64, 16, "an MLP"),
        (3, 6, 8, "an MLP"),
        (5, 12, 0, "a logistic regression"),
        (4, 8, 5, "an MLP"),
        (10, 64, 32, "an MLP"),
    )
    for i, (n_classes, d, hidden, kind) in enumerate(settings):
        seed = int(torch.randint(0, 10_000, (1,), generator=generator))
        if kind == "an MLP":
            model = models.mlp(d, n_classes, hidden=hidden, seed=seed)
        else:
            model = models.logistic_regression(d, n_classes, seed=seed)
        x = torch.rand(1, d, generator=generator)
        y = (
            (0, n_classes - 1)[i]
            if i < 2
            else int(torch.randint(0, n_classes, (1,), generator=generator))
        )
        grads = leakage.client_gradients(model, x, torch.tensor([y]))
        shapes = [tuple(g.shape) for g in grads]
        cases.append(
            (
                f"the gradient of one example on {kind} with {n_classes} classes (shapes {shapes})",
                grads,
                n_classes,
                y,
            )
        )
    return [*cases, _confidently_wrong(generator)]


def _confidently_wrong(generator: torch.Generator) -> tuple[str, list[torch.Tensor], int, int]:
    """One example of the last class on an MLP whose last bias makes it certain of class 0.

    Its bias gradient is +1 on class 0 and -1 on the true class: equal in size, so only the sign
    tells them apart."""
    n_classes, d = 6, 12
    model = models.mlp(
        d, n_classes, hidden=8, seed=int(torch.randint(0, 10_000, (1,), generator=generator))
    )
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[0] += 60.0
    x, y = torch.rand(1, d, generator=generator), n_classes - 1
    grads = leakage.client_gradients(model, x, torch.tensor([y]))
    label = (
        f"the gradient of one example of class {y} on an MLP with {n_classes} classes that is "
        "confidently wrong (it gives class 0 probability 1)"
    )
    return label, grads, n_classes, y


@grader("infer_label", "gdsec.leakage.infer_labels")
def grade_infer_label(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(grads) -> int``, the label of one example from its gradient (iDLG).

    Taught in chapter 9.
    """
    cases = _cases(generator)
    for label, grads, n_classes, _ in cases:
        inputs = [g.clone() for g in grads]
        got = _as_int(not_none(call(fn, label, inputs), label), label)
        unchanged(grads, inputs, [f"grads[{i}]" for i in range(len(grads))], label)
        expected = int(leakage.infer_labels(grads, n_classes=n_classes, batch_size=1)[0])
        if got != expected:
            bias = grads[-1]
            if got == int(bias.abs().argmax()) and bias.max() >= -bias.min() - 1e-6:
                hint = (
                    "you picked the entry of largest size (or the most positive): on a confidently wrong model "
                    "the predicted class's entry (softmax_c ~ +1) is as large as the true class's "
                    "(softmax_y - 1 ~ -1); only the sign tells them apart: the true class is the only "
                    "negative entry (argmin)"
                )
            elif got == int(bias.argmax()):
                hint = (
                    "you picked the most POSITIVE entry of the last bias gradient: the gradient on logit c is "
                    "softmax_c - 1[y = c], so the true class is the only negative one (argmin)"
                )
            elif len(grads) > 2 and got in (int(grads[1].argmin()), int(grads[1].argmax())):
                hint = (
                    "it looks like you read a hidden layer's bias: the last layer's bias gradient "
                    f"is grads[-1], with {n_classes} entries"
                )
            elif not 0 <= got < n_classes:
                hint = f"a label is a class in [0, {n_classes})"
            else:
                hint = "look at the sign of the last layer's bias gradient, grads[-1]"
            raise Failure(
                f"for {label}: the label is {expected}, yours is {got}; last bias gradient {describe(bias)}. {hint}"
            )
    return (
        f"{len(cases)} single-example gradients (3 to 10 classes, MLPs and a logistic regression, "
        "a confidently wrong model)"
    )
