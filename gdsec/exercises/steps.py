"""Checkers for the update-rule exercises: a gradient step (ch. 1), Adam (ch. 2), gradient clipping (ch. 7)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gdsec import aggregation, optim
from gdsec.exercises.core import (
    Failure,
    call,
    describe,
    diagnose,
    grader,
    matches,
    mismatch,
    need_tensor,
    not_none,
    unchanged,
)

__all__ = ["grade_adam_step", "grade_clip_gradient", "grade_gradient_step"]


def _bowl(generator: torch.Generator, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random point ``w`` on a random quadratic bowl 0.5 * sum(c w^2), its curvatures and its gradient."""
    curvatures = 0.5 + 4 * torch.rand(d, generator=generator, dtype=torch.float64)
    w = torch.randn(d, generator=generator, dtype=torch.float64)
    return w, curvatures, curvatures * w


@grader("gradient_step", "gdsec.optim.sgd_step")
def grade_gradient_step(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(w, grad, lr) -> w - lr * grad`` (one descent step).

    Taught in chapter 1.
    """
    cases = 0
    for d in (1, 3, 5):
        w, curv, grad = _bowl(generator, d)
        answers = {}
        for lr in (0.5, 0.1, 0.01):
            label = f"w={describe(w)}, grad={describe(grad)}, lr={lr}"
            w_in, g_in = w.clone(), grad.clone()
            answers[lr] = need_tensor(
                call(fn, label, w_in, g_in, lr), label, shape=w.shape, floating=True
            )
            unchanged([w, grad], [w_in, g_in], ["w", "grad"], label)
        for lr, got in answers.items():
            label = f"w={describe(w)}, grad={describe(grad)}, lr={lr}"
            expected = optim.sgd_step(w, grad, {}, lr=lr)[0]
            if matches(got, expected):
                cases += 1
                continue
            loss = float(0.5 * (curv * w**2).sum())
            new_loss = float(0.5 * (curv * got.double() ** 2).sum())
            hint = diagnose(
                got,
                [
                    (
                        f"your step goes uphill: the loss rose from {loss:.4g} to {new_loss:.4g}; "
                        "subtract the gradient (w - lr * grad), do not add it",
                        w + lr * grad,
                    ),
                    (
                        "your step ignores the learning rate: you moved by the full gradient (w - grad)",
                        w - grad,
                    ),
                    (
                        "you returned the step -lr * grad, not the new point w - lr * grad",
                        -lr * grad,
                    ),
                    ("you returned w unchanged: the step must move by -lr * grad", w),
                    (
                        "you divided by the learning rate: the step is lr * grad, not grad / lr",
                        w - grad / lr,
                    ),
                ],
            )
            if hint is None and matches(answers[0.5], answers[0.1]):
                hint = "your step ignores the learning rate: with lr=0.5 and lr=0.1 you returned the same point"
            raise mismatch(label, expected, got, hint=hint or "one step is w - lr * grad")
    zero = torch.zeros(2, dtype=torch.float64)
    point = torch.tensor([1.5, -2.0], dtype=torch.float64)
    label = f"a minimum (grad = 0) at w={describe(point)}, lr=0.1"
    got = need_tensor(
        call(fn, label, point.clone(), zero.clone(), 0.1), label, shape=(2,), floating=True
    )
    if not matches(got, point):
        raise mismatch(label, point, got, hint="where the gradient is zero the step must not move")
    return f"{cases + 1} cases (1, 3 and 5 dimensions, lr 0.5, 0.1 and 0.01, a zero gradient)"


#: The typical wrong Adam rules, each followed along the same inputs from its own state.
_ADAM_MISTAKES = {
    "no_bias": "you forgot the bias correction: divide m by (1 - beta1**t) and v by (1 - beta2**t)",
    "t_plus_one": "off-by-one in the bias correction: count the step once (t = 1 on the first call), not twice",
    "t_fixed": "your step count never grows: store t in the state and add 1 on every call",
    "sign": "sign error: Adam moves against the gradient (param - lr * m_hat / ...)",
    "no_sqrt": "you divided by v_hat instead of its square root",
    "swap": "you swapped beta1 and beta2: beta1 averages the gradient, beta2 its square",
    "weights": "you weighted the running means the wrong way round: m = beta1 * m + (1 - beta1) * grad",
}


def _wrong_adam(
    kind: str, param: torch.Tensor, grad: torch.Tensor, state: dict, lr: float, b1: float, b2: float
) -> tuple[torch.Tensor, dict]:
    """One step of the mistaken Adam rule ``kind`` (a key of ``_ADAM_MISTAKES``)."""
    t = state.get("t", 0) + 1
    beta_m, beta_v = (b2, b1) if kind == "swap" else (b1, b2)
    m0, v0 = state.get("m", torch.zeros_like(grad)), state.get("v", torch.zeros_like(grad))
    if kind == "weights":
        m, v = (1 - beta_m) * m0 + beta_m * grad, (1 - beta_v) * v0 + beta_v * grad * grad
    else:
        m, v = beta_m * m0 + (1 - beta_m) * grad, beta_v * v0 + (1 - beta_v) * grad * grad
    tt = {"t_plus_one": t + 1, "t_fixed": 1}.get(kind, t)
    m_hat, v_hat = (m, v) if kind == "no_bias" else (m / (1 - beta_m**tt), v / (1 - beta_v**tt))
    root = v_hat if kind == "no_sqrt" else v_hat.sqrt()
    sign = 1.0 if kind == "sign" else -1.0
    return param + sign * lr * m_hat / (root + 1e-8), {"m": m, "v": v, "t": t}


@grader("adam_step", "gdsec.optim.adam_step")
def grade_adam_step(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(param, grad, state, *, lr, beta1, beta2, eps) -> (new_param, new_state)`` (Adam).

    Taught in chapter 2.
    """
    settings = [(0.1, 0.9, 0.999, 3), (0.01, 0.5, 0.9, 4), (0.3, 0.8, 0.99, 1)]
    for lr, b1, b2, d in settings:
        param = torch.randn(d, generator=generator, dtype=torch.float64)
        ref_state: optim.State = {}
        state: object = {}
        wrong_states: dict[str, dict] = {kind: {} for kind in _ADAM_MISTAKES}
        for t in range(1, 6):
            grad = torch.randn(d, generator=generator, dtype=torch.float64) * (1 + 3 * (t == 3))
            label = f"step {t} with lr={lr}, beta1={b1}, beta2={b2}, grad={describe(grad)}"
            p_in, g_in = param.clone(), grad.clone()
            out = not_none(
                call(fn, label, p_in, g_in, state, lr=lr, beta1=b1, beta2=b2, eps=1e-8), label
            )
            if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[1], dict):
                raise Failure(
                    f"for {label}: return a pair (new_param, new_state) with the state a dict, got {describe(out)}"
                )
            if not torch.is_tensor(out[0]) or not torch.isfinite(out[0]).all():
                if t == 1 and torch.is_tensor(out[0]):
                    raise Failure(
                        f"for {label}: your step returned {describe(out[0])}: off-by-one in the bias correction? "
                        "at the first step t = 1; with t = 0, 1 - beta**0 = 0 divides by zero"
                    )
            got = need_tensor(out[0], label, shape=param.shape, floating=True)
            unchanged([param, grad], [p_in, g_in], ["param", "grad"], label)
            expected, ref_state = optim.adam_step(
                param, grad, ref_state, lr=lr, beta1=b1, beta2=b2, eps=1e-8
            )
            variants = []
            if t > 1:
                fresh = optim.adam_step(param, grad, {}, lr=lr, beta1=b1, beta2=b2, eps=1e-8)[0]
                variants.append(
                    (
                        "every step behaves like the first one (m = (1 - beta1) * grad, t = 1): the state "
                        "did not carry over; return the NEW state {m, v, t}, not the one passed in",
                        fresh,
                    )
                )
            for kind, message in _ADAM_MISTAKES.items():
                wrong, wrong_states[kind] = _wrong_adam(
                    kind, param, grad, wrong_states[kind], lr, b1, b2
                )
                variants.append((message, wrong))
            if not matches(got, expected, atol=1e-7):
                hint = diagnose(got, variants, atol=1e-7)
                raise mismatch(
                    label,
                    expected,
                    got,
                    hint=hint or "compare each line with the Adam update in the text",
                )
            param, state = expected, out[1]
    return "5 steps in each of 3 settings (different lr, beta1, beta2; a gradient spike at step 3)"


def _flat_clip(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """Reference: the gradients as one vector, clipped by ``gdsec.aggregation.clip_updates``, split back."""
    flat = torch.cat([g.flatten() for g in grads])
    clipped = aggregation.clip_updates(flat[None], max_norm=max_norm)[0]
    return [
        part.reshape(g.shape)
        for part, g in zip(clipped.split([g.numel() for g in grads]), grads, strict=True)
    ]


def _global_norm(grads: list[torch.Tensor]) -> float:
    """sqrt of the sum of squares over every tensor."""
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


@grader("clip_gradient", "gdsec.aggregation.clip_updates")
def grade_clip_gradient(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(grads, max_norm) -> clipped grads`` (clip by global norm).

    Taught in chapter 7.
    """
    shapes = [[(3, 2), (2,), (4,)], [(5,)], [(2, 2), (3,)]]
    cases = [
        (shapes[0], 1.0, 4.0),
        (shapes[0], 5.0, 0.5),
        (shapes[1], 2.0, 3.0),
        (shapes[2], 0.5, 10.0),
        (shapes[2], 1.0, 0.0),
    ]
    for parts, max_norm, ratio in cases:
        grads = [torch.randn(s, generator=generator, dtype=torch.float64) for s in parts]
        norm = _global_norm(grads)
        grads = [g * (ratio * max_norm / norm) for g in grads]
        label = f"gradients of shapes {parts} with global norm {ratio * max_norm:.3g} and max_norm={max_norm}"
        inputs = [g.clone() for g in grads]
        out = not_none(call(fn, label, inputs, max_norm), label)
        if not isinstance(out, list | tuple) or len(out) != len(grads):
            raise Failure(
                f"for {label}: return a list with one tensor per gradient ({len(grads)}), got {describe(out)}"
            )
        if ratio == 0.0 and any(
            torch.is_tensor(o) and o.is_floating_point() and not torch.isfinite(o).all()
            for o in out
        ):
            raise Failure(
                f"for {label}: a zero gradient came back as NaN: guard the division by a zero norm"
            )
        got = [
            need_tensor(o, label, shape=g.shape, floating=True)
            for o, g in zip(out, grads, strict=True)
        ]
        unchanged(grads, inputs, [f"grads[{i}]" for i in range(len(grads))], label)
        expected = _flat_clip(grads, max_norm)
        if not all(matches(a, b) for a, b in zip(got, expected, strict=True)):
            new = _global_norm(got)
            flat_got = torch.cat([g.flatten() for g in got])
            variants = [
                (
                    "you clipped each tensor separately: clip by the global norm, the square root of the "
                    f"sum of squares over ALL tensors (yours has global norm {new:.3g} > max_norm={max_norm})",
                    torch.cat(
                        [
                            aggregation.clip_updates(g.flatten()[None], max_norm=max_norm)[0]
                            for g in grads
                        ]
                    ),
                ),
                (
                    f"you scaled up a gradient shorter than max_norm (norm {ratio * max_norm:.3g} became {new:.3g}): "
                    "clipping only ever shrinks, so multiply by min(1, max_norm / norm)",
                    torch.cat(
                        [g.flatten() * max_norm / max(ratio * max_norm, 1e-12) for g in grads]
                    ),
                ),
                (
                    "you clipped each coordinate to [-max_norm, max_norm] (value clipping): rescale the whole "
                    "gradient so its global norm is at most max_norm",
                    torch.cat([g.flatten().clamp(-max_norm, max_norm) for g in grads]),
                ),
            ]
            hint = diagnose(flat_got, variants)
            if hint is None and ratio == 0.0:
                hint = "a zero gradient must stay zero (guard the division by a zero norm)"
            hint = hint or "multiply every tensor by min(1, max_norm / global_norm)"
            raise Failure(
                f"for {label}: the reference returns gradients of global norm {min(ratio, 1.0) * max_norm:.3g}, "
                f"yours have global norm {new:.3g}. {hint}"
            )
    return f"{len(cases)} cases (norms below and above max_norm, one and several tensors, a zero gradient)"
