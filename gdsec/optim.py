"""Hand-written update rules (SGD, momentum, Nesterov, RMSprop, Adam) that match ``torch.optim`` step for step.

Each rule is a pure function ``(param, grad, state, *, lr, ...) -> (new_param, new_state)``: no object
holds hidden state, so the notebook can print every quantity the update uses. Also here: momentum's
convergence rate on a quadratic (:func:`momentum_rate`) and learning-rate schedules (:func:`lr_schedule`).
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Callable, Iterable

import torch

from gdsec.streams import random_stream
from gdsec.validation import check_choice, check_int, check_keywords, check_number

__all__ = [
    "HYPERPARAMETERS",
    "OPTIMIZERS",
    "SCHEDULES",
    "TORCH_HYPERPARAMETERS",
    "UPDATE_RULES",
    "adam_step",
    "check_descent_args",
    "lr_schedule",
    "minimize",
    "momentum_rate",
    "momentum_step",
    "nesterov_step",
    "rmsprop_step",
    "sgd_step",
    "step",
    "torch_optimizer",
]

#: The optimizers every training loop accepts (``gdsec.train.train``, ``gdsec.seeds.train_seeds``).
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
#: Every hand-written rule: ``OPTIMIZERS`` plus Nesterov momentum (for :func:`step`, :func:`minimize`).
UPDATE_RULES = (*OPTIMIZERS, "nesterov")
#: The learning-rate schedules :func:`lr_schedule` knows.
SCHEDULES = ("constant", "inverse", "cosine", "step")
State = dict[str, torch.Tensor | int]

#: The hyper-parameters each optimizer accepts besides ``lr``: the hand-written rule's keywords, plus
#: ``weight_decay`` for the ``torch.optim`` equivalents (:func:`torch_optimizer`, ``gdsec.train.train``).
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("beta",),
    "nesterov": ("beta",),
    "rmsprop": ("alpha", "eps"),
    "adam": ("beta1", "beta2", "eps"),
}
#: What :func:`torch_optimizer` (and every training loop built on it) accepts besides ``lr``: the
#: rule's own hyper-parameters plus ``weight_decay``.
TORCH_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    name: (*keys, "weight_decay") for name, keys in HYPERPARAMETERS.items()
}


def sgd_step(
    param: torch.Tensor, grad: torch.Tensor, state: State, *, lr: float
) -> tuple[torch.Tensor, State]:
    """Plain gradient descent: w <- w - lr * g.

    Taught in chapter 1.
    """
    return param - lr * grad, state


def momentum_step(
    param: torch.Tensor, grad: torch.Tensor, state: State, *, lr: float, beta: float = 0.9
) -> tuple[torch.Tensor, State]:
    """Heavy-ball momentum as in ``torch.optim.SGD``: v <- beta v + g; w <- w - lr v (v starts at g).

    Taught in chapter 2.
    """
    velocity = grad.clone() if "velocity" not in state else beta * state["velocity"] + grad
    return param - lr * velocity, {"velocity": velocity}


def nesterov_step(
    param: torch.Tensor, grad: torch.Tensor, state: State, *, lr: float, beta: float = 0.9
) -> tuple[torch.Tensor, State]:
    """Nesterov momentum as in ``torch.optim.SGD(nesterov=True)``: v <- beta v + g; w <- w - lr (g + beta v).

    The look-ahead form: the step uses the velocity one update ahead, which is the gradient at the
    extrapolated point w - lr beta v written in terms of the gradient at w.
    Taught in chapter 2.
    """
    velocity = grad.clone() if "velocity" not in state else beta * state["velocity"] + grad
    return param - lr * (grad + beta * velocity), {"velocity": velocity}


def rmsprop_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: State,
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, State]:
    """RMSprop: s <- alpha s + (1 - alpha) g^2; w <- w - lr g / (sqrt(s) + eps).

    Taught in chapter 2.
    """
    square_avg = state.get("square_avg", torch.zeros_like(grad))
    square_avg = alpha * square_avg + (1 - alpha) * grad * grad
    return param - lr * grad / (square_avg.sqrt() + eps), {"square_avg": square_avg}


def adam_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: State,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, State]:
    """Adam: bias-corrected running means of g and g^2; w <- w - lr m_hat / (sqrt(v_hat) + eps).

    Taught in chapter 2.
    """
    t = int(state.get("t", 0)) + 1
    m = beta1 * state.get("m", torch.zeros_like(grad)) + (1 - beta1) * grad
    v = beta2 * state.get("v", torch.zeros_like(grad)) + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return param - lr * m_hat / (v_hat.sqrt() + eps), {"m": m, "v": v, "t": t}


_RULES: dict[str, Callable[..., tuple[torch.Tensor, State]]] = {
    "sgd": sgd_step,
    "momentum": momentum_step,
    "nesterov": nesterov_step,
    "rmsprop": rmsprop_step,
    "adam": adam_step,
}


def step(
    name: str, param: torch.Tensor, grad: torch.Tensor, state: State, *, lr: float, **hyper: float
) -> tuple[torch.Tensor, State]:
    """Apply the update rule called ``name`` (one of ``UPDATE_RULES``) once.

    ``hyper`` holds the rule's keywords (``HYPERPARAMETERS[name]``); any other raises ``ValueError``.
    Taught in chapter 2.
    """
    check_choice("optimizer", name, UPDATE_RULES)
    check_number("lr", lr, low=0.0, low_open=True)
    check_keywords(f"optimizer {name!r}", hyper, HYPERPARAMETERS[name])
    return _RULES[name](param, grad, state, lr=lr, **hyper)


def torch_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], *, lr: float, **hyper: float
) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer equivalent to the hand-written rule ``name``, same hyper-parameters.

    ``hyper`` holds ``HYPERPARAMETERS[name]`` and ``weight_decay``; any other raises ``ValueError``
    naming it (so ``momentum=0.9`` for ``"sgd"`` is an error, not plain SGD). ``name`` is one of
    ``UPDATE_RULES`` (``"nesterov"`` is ``torch.optim.SGD(nesterov=True)``).
    Taught in chapter 2.
    """
    check_choice("optimizer", name, UPDATE_RULES)
    check_number("lr", lr, low=0.0, low_open=True)
    check_keywords(f"optimizer {name!r}", hyper, TORCH_HYPERPARAMETERS[name])
    hyper = dict(hyper)
    weight_decay = hyper.pop("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=hyper.get("beta", 0.9),
            nesterov=name == "nesterov",
            weight_decay=weight_decay,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=lr,
            alpha=hyper.get("alpha", 0.99),
            eps=hyper.get("eps", 1e-8),
            weight_decay=weight_decay,
        )
    betas = (hyper.get("beta1", 0.9), hyper.get("beta2", 0.999))
    return torch.optim.Adam(
        params, lr=lr, betas=betas, eps=hyper.get("eps", 1e-8), weight_decay=weight_decay
    )


def check_descent_args(
    optimizer: str, lr: float, steps: int, grad_noise: float, blowup: float, hyper: dict[str, float]
) -> None:
    """Validate the arguments shared by :func:`minimize` and ``landscape.descend_many``.

    ``hyper`` must hold only ``HYPERPARAMETERS[optimizer]``; any other raises ``ValueError`` naming it.
    Used in chapters 1 and 7.
    """
    check_choice("optimizer", optimizer, UPDATE_RULES)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("steps", steps, low=1)
    check_number("grad_noise", grad_noise, low=0.0)
    check_number("blowup", blowup, low=0.0, low_open=True)
    check_keywords(f"optimizer {optimizer!r}", hyper, HYPERPARAMETERS[optimizer])


def minimize(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    start: Iterable[float] | torch.Tensor,
    *,
    optimizer: str = "sgd",
    lr: float,
    steps: int,
    grad_noise: float = 0.0,
    seed: int = 0,
    blowup: float = 1e6,
    **hyper: float,
) -> torch.Tensor:
    """Run a hand-written optimizer on ``loss_fn`` from ``start``; return the path, shape (k, d).

    ``grad_noise`` adds Gaussian noise of that standard deviation to each gradient (a stand-in for
    mini-batch noise). The path stops early (k < steps + 1) once the iterate leaves the ball of
    radius ``blowup`` or becomes non-finite: that is divergence. Unknown ``hyper`` raise ``ValueError``.
    Taught in chapters 1 and 2.
    """
    check_descent_args(optimizer, lr, steps, grad_noise, blowup, hyper)
    point = torch.as_tensor(start, dtype=torch.float64).detach().clone().reshape(-1)
    if not torch.isfinite(point).all():
        raise ValueError("start must be finite")
    generator = random_stream(seed, "optim.minimize.noise")
    path = [point.clone()]
    state: State = {}
    for _ in range(steps):
        current = point.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(current), current)
        if grad_noise:
            grad = grad + grad_noise * torch.randn(
                grad.shape, generator=generator, dtype=grad.dtype
            )
        point, state = _RULES[optimizer](point, grad, state, lr=lr, **hyper)
        if not torch.isfinite(point).all() or point.norm() > blowup:
            break
        path.append(point.clone())
    return torch.stack(path)


def momentum_rate(lr: float, beta: float, curvature: float) -> float:
    """Heavy-ball momentum's convergence rate on the quadratic ``curvature * w^2 / 2``: the spectral radius.

    The iteration (v, w) -> (beta v + c w, w - lr (beta v + c w)) is linear with matrix
    [[beta, c], [-lr beta, 1 - lr c]]; its eigenvalue of largest modulus shrinks the error per step.
    It is below 1 exactly when 0 < lr c < 2 (1 + beta) (the stability region); ``beta = 0`` is plain
    descent, |1 - lr c| (Goh 2017, "Why Momentum Really Works").
    Taught in chapter 2.
    """
    check_number("lr", lr, low=0.0, low_open=True)
    check_number("beta", beta, low=0.0, high=1.0, high_open=True)
    check_number("curvature", curvature, low=0.0, low_open=True)
    trace = beta + 1 - lr * curvature
    root = cmath.sqrt(trace * trace - 4 * beta)  # the determinant of the matrix is beta
    return max(abs((trace + root) / 2), abs((trace - root) / 2))


def lr_schedule(name: str, *, lr: float, steps: int, tau: float | None = None) -> torch.Tensor:
    """The learning rate of each of ``steps`` steps (float64, shape (steps,)) under schedule ``name``.

    ``"constant"``: lr. ``"inverse"``: lr tau / (tau + t), a Robbins-Monro schedule (its sum diverges,
    the sum of its squares converges); ``tau`` (default steps / 10) is the step at which it halves.
    ``"cosine"``: lr (1 + cos(pi t / steps)) / 2. ``"step"``: lr, divided by 10 after each third of the run.
    Taught in chapter 2.
    """
    check_choice("schedule", name, SCHEDULES)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("steps", steps, low=1)
    if tau is not None:
        check_number("tau", tau, low=0.0, low_open=True)
        if name != "inverse":
            raise ValueError(f"tau is a setting of the 'inverse' schedule only, not of {name!r}")
    t = torch.arange(steps, dtype=torch.float64)
    if name == "constant":
        return torch.full((steps,), float(lr), dtype=torch.float64)
    if name == "inverse":
        half = steps / 10 if tau is None else tau
        return lr * half / (half + t)
    if name == "cosine":
        return lr * (1 + torch.cos(math.pi * t / steps)) / 2
    return lr * 0.1 ** torch.floor(3 * t / steps)
