"""Test-time (evasion) attacks: the gradient that trains a model, aimed at its inputs.

Every attack takes a model that maps inputs in [0, 1] to logits and any input shape (images
``(N, 1, 8, 8)`` or tabular ``(N, d)``). It returns a new, detached tensor of the same shape and
dtype, clipped to [0, 1] and inside its budget; it leaves ``x`` untouched, restores
``model.training`` and never touches the parameters' ``.grad`` (gradients are taken with
``torch.autograd.grad`` with respect to the input only). Bad arguments raise ``ValueError``
naming the argument.

* :func:`fgsm` — one signed-gradient step of size ``eps`` (Goodfellow et al. 2015).
* :func:`pgd` — many projected steps, L-infinity or L2 ball, random start, restarts (Madry et al. 2018).
* :func:`cw_l2` — the Carlini-Wagner L2 objective, minimised with Adam, binary search on ``c``.
* :func:`deepfool` — repeated linearisation towards the nearest decision boundary
  (Moosavi-Dezfooli et al. 2016).
* :func:`robust_accuracy` — accuracy that survives an attack, by name or callable.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import torch
from torch import nn

from gdsec.models import eval_mode
from gdsec.validation import (
    check_choice,
    check_int,
    check_labels,
    check_model,
    check_number,
    check_unit_tensor,
)

__all__ = [
    "ATTACKS",
    "check_attack_inputs",
    "checked_logits",
    "cw_l2",
    "deepfool",
    "eval_mode",
    "fgsm",
    "margin",
    "perturbation_norm",
    "pgd",
    "robust_accuracy",
]

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

#: Attack names understood by :func:`robust_accuracy` (``square`` and ``spsa`` live in ``gdsec.blackbox``).
ATTACKS = ("fgsm", "pgd", "cw_l2", "deepfool", "square", "spsa")
_NORMS = ("inf", "2")
_TINY = 1e-12


# --------------------------------------------------------------------------- helpers


def checked_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``x``, checked to be a finite (N, n_classes) matrix."""
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"model must map x to logits of shape (N, n_classes), got {getattr(out, 'shape', out)}")
    return out


def check_attack_inputs(model: object, x: object, y: object | None) -> int:
    """Validate model, x (values in [0, 1], batch first) and y; return the number of classes."""
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    with torch.no_grad(), eval_mode(model):  # type: ignore[arg-type]
        n_classes = checked_logits(model, x[:1]).shape[1]  # type: ignore[arg-type, index]
    if n_classes < 2:
        raise ValueError(f"model must output at least 2 logits per row, got {n_classes}")
    if y is not None:
        check_labels("y", y, n=x.shape[0], n_classes=n_classes)  # type: ignore[union-attr]
    return n_classes


def _check_norm(norm: object) -> str:
    """Map ``norm`` ("inf", "2", math.inf or 2) to "inf" or "2"."""
    if isinstance(norm, int | float) and not isinstance(norm, bool):
        norm = "inf" if norm == math.inf else "2" if norm == 2 else str(norm)
    return check_choice("norm", norm, _NORMS)


def _row_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-row L-infinity or L2 norm of ``t``, shaped (N,)."""
    flat = t.reshape(t.shape[0], -1)
    return flat.abs().amax(1) if norm == "inf" else flat.norm(dim=1)


def _per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (N,) vector so it broadcasts over the rows of ``like``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, gradient of the summed cross-entropy w.r.t. ``x``), without touching parameter grads."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = checked_logits(model, x)
        loss = nn.functional.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return logits.detach(), grad


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row margin ``z_y - max_{k != y} z_k``: positive when correct, negative when fooled."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], -math.inf).amax(1)
    return true - others


def perturbation_norm(x: torch.Tensor, x_adv: torch.Tensor, *, norm: str = "2") -> torch.Tensor:
    """Per-row size of ``x_adv - x`` in the L-infinity ("inf") or L2 ("2") norm, shaped (N,)."""
    norm = _check_norm(norm)
    if not isinstance(x, torch.Tensor) or not isinstance(x_adv, torch.Tensor) or x.shape != x_adv.shape:
        raise ValueError("x and x_adv must be tensors of the same shape")
    return _row_norm((x_adv - x).detach(), norm)


def _generator(seed: int | None) -> torch.Generator | None:
    """A private generator for ``seed``, or None to use torch's global generator."""
    if seed is None:
        return None
    return torch.Generator().manual_seed(check_int("seed", seed, low=0))


def _project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x`` and the [0, 1] box."""
    if norm == "inf":
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
    else:
        delta = x_adv - x
        size = _row_norm(delta, "2")
        factor = torch.clamp(eps / (size + _TINY), max=1.0)
        x_adv = x + delta * _per_row(factor, delta)
    return x_adv.clamp(0.0, 1.0)


def _random_start(x: torch.Tensor, eps: float, norm: str, gen: torch.Generator | None) -> torch.Tensor:
    """A uniform random point of the eps-ball around ``x`` (then clipped to [0, 1])."""
    if norm == "inf":
        noise = (torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1) * eps
    else:
        direction = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        direction = direction / (_per_row(_row_norm(direction, "2"), x) + _TINY)
        d = x[0].numel()
        radius = torch.rand(x.shape[0], generator=gen, dtype=x.dtype).pow(1.0 / d) * eps
        noise = direction * _per_row(radius, x)
    return _project(x, x + noise, eps, norm)


# --------------------------------------------------------------------------- FGSM


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method: ``x + eps * sign(grad_x loss)``, clipped to [0, 1]."""
    check_attack_inputs(model, x, y)
    eps = check_number("eps", eps, low=0.0)
    with eval_mode(model):
        _, grad = _input_gradient(model, x, y)
    return (x.detach() + eps * grad.sign()).clamp(0.0, 1.0).detach()


# --------------------------------------------------------------------------- PGD


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    steps: int = 40,
    norm: str = "inf",
    random_start: bool = True,
    seed: int | None = None,
    restarts: int = 1,
) -> torch.Tensor:
    """Projected gradient descent on the loss (ascent), in the L-inf or L2 ``eps``-ball.

    Each step moves by ``alpha`` along the sign of the gradient (L-inf) or the normalised gradient
    (L2), then projects back onto the ball and the [0, 1] box. ``alpha=None`` uses
    ``max(2.5 * eps / steps, eps / 10)``. Per row, the iterate with the smallest margin seen over
    all steps and ``restarts`` is returned, so more steps or restarts never make the attack weaker.
    ``seed=None`` draws the random start from torch's global generator.
    """
    check_attack_inputs(model, x, y)
    eps = check_number("eps", eps, low=0.0)
    steps = check_int("steps", steps, low=1)
    norm = _check_norm(norm)
    restarts = check_int("restarts", restarts, low=1)
    if not isinstance(random_start, bool):
        raise ValueError(f"random_start must be True or False, got {random_start!r}")
    alpha = max(2.5 * eps / steps, eps / 10) if alpha is None else check_number("alpha", alpha, low=0.0, low_open=True)
    gen = _generator(seed)
    x = x.detach()
    if eps == 0:
        return x.clone()
    with eval_mode(model):
        with torch.no_grad():
            best = x.clone()
            best_margin = margin(checked_logits(model, x), y)
        for _ in range(restarts):
            x_adv = _random_start(x, eps, norm, gen) if random_start else x.clone()
            for _ in range(steps):
                logits, grad = _input_gradient(model, x_adv, y)
                _keep_best(best, best_margin, x_adv, margin(logits, y))
                if norm == "inf":
                    step = grad.sign()
                else:
                    step = grad / (_per_row(_row_norm(grad, "2"), grad) + _TINY)
                x_adv = _project(x, x_adv + alpha * step, eps, norm)
            with torch.no_grad():
                _keep_best(best, best_margin, x_adv, margin(checked_logits(model, x_adv), y))
    return best.detach()


def _keep_best(best: torch.Tensor, best_margin: torch.Tensor, x_new: torch.Tensor, new_margin: torch.Tensor) -> None:
    """In place: where ``new_margin`` is smaller, copy the row of ``x_new`` into ``best``."""
    better = new_margin < best_margin
    best[better] = x_new[better].detach()
    best_margin[better] = new_margin[better]


# --------------------------------------------------------------------------- Carlini-Wagner L2


def cw_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    c: float = 1.0,
    kappa: float = 0.0,
    steps: int = 100,
    lr: float = 0.01,
    search_steps: int = 5,
) -> torch.Tensor:
    """Carlini-Wagner L2: minimise ``||delta||_2^2 + c * max(z_y - max_{k!=y} z_k, -kappa)`` with Adam.

    ``c`` is the starting constant; ``search_steps`` rounds of binary search adjust it per row
    (bisect after a success, multiply by 10 until the first one), each round warm-started from the
    smallest success so far. The optimisation runs on the pixels with clipping to [0, 1] after each
    step instead of C&W's tanh change of variables, which stalls on pixels that sit exactly at 0
    or 1 (most of a digit). Rows whose objective stops falling leave the batch early (C&W's early
    abort). Per row the smallest successful perturbation seen is returned; rows never fooled, and
    rows the model already misclassifies, come back unchanged.
    """
    check_attack_inputs(model, x, y)
    c = check_number("c", c, low=0.0, low_open=True)
    kappa = check_number("kappa", kappa, low=0.0)
    steps = check_int("steps", steps, low=1)
    lr = check_number("lr", lr, low=0.0, low_open=True)
    search_steps = check_int("search_steps", search_steps, low=1)
    x = x.detach()
    n = x.shape[0]
    const = torch.full((n,), c, dtype=x.dtype)
    lower = torch.zeros(n, dtype=x.dtype)
    upper = torch.full((n,), math.inf, dtype=x.dtype)
    best = x.clone()
    best_size = torch.full((n,), math.inf, dtype=x.dtype)
    with eval_mode(model):
        with torch.no_grad():
            fooled = checked_logits(model, x).argmax(1) != y
        best_size[fooled] = 0.0
        for _ in range(search_steps):
            success = _cw_round(model, x, y, const, kappa, steps, lr, best, best_size)
            upper = torch.where(success, torch.minimum(upper, const), upper)
            lower = torch.where(success, lower, torch.maximum(lower, const))
            const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
    return best.detach()


def _cw_round(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    const: torch.Tensor,
    kappa: float,
    steps: int,
    lr: float,
    best: torch.Tensor,
    best_size: torch.Tensor,
) -> torch.Tensor:
    """One Adam run of the C&W objective at per-row constants; update ``best`` in place; return successes.

    Adam is written out so that rows whose objective stops falling (checked every ``steps // 10``
    steps, as C&W's early abort) leave the batch and cost nothing afterwards.
    """
    beta1, beta2, tiny = 0.9, 0.999, 1e-8
    delta = (best - x).clone()  # warm start from the smallest success so far (zero before any)
    m1, m2 = torch.zeros_like(x), torch.zeros_like(x)
    success = torch.zeros(x.shape[0], dtype=torch.bool)
    previous = torch.full((x.shape[0],), math.inf, dtype=x.dtype)
    active = torch.arange(x.shape[0])
    check_every = max(1, steps // 10)
    for step in range(1, steps + 1):
        if active.numel() == 0:
            break
        xa, ya = x[active], y[active]
        with torch.enable_grad():
            d = delta[active].requires_grad_(True)
            x_adv = (xa + d).clamp(0.0, 1.0)
            logits = checked_logits(model, x_adv)
            m = margin(logits, ya)
            size = _row_norm(x_adv - xa, "2")
            objective = size.pow(2) + const[active] * torch.clamp(m + kappa, min=0.0)
            (grad,) = torch.autograd.grad(objective.sum(), d)
        with torch.no_grad():
            _record_success(active, logits, m, size, x_adv, y, kappa, success, best, best_size)
            m1[active] = beta1 * m1[active] + (1 - beta1) * grad
            m2[active] = beta2 * m2[active] + (1 - beta2) * grad.pow(2)
            m_hat = m1[active] / (1 - beta1**step)
            v_hat = m2[active] / (1 - beta2**step)
            moved = d - lr * m_hat / (v_hat.sqrt() + tiny)
            delta[active] = (xa + moved).clamp(0.0, 1.0) - xa
            if step % check_every == 0:
                value = objective.detach()
                going = value < 0.9999 * previous[active]
                previous[active] = value
                active = active[going]
    with torch.no_grad():
        x_adv = (x + delta).clamp(0.0, 1.0)
        logits = checked_logits(model, x_adv)
        everyone = torch.arange(x.shape[0])
        _record_success(everyone, logits, margin(logits, y), _row_norm(x_adv - x, "2"), x_adv, y, kappa, success, best, best_size)
    return success


def _record_success(
    rows: torch.Tensor,
    logits: torch.Tensor,
    m: torch.Tensor,
    size: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    kappa: float,
    success: torch.Tensor,
    best: torch.Tensor,
    best_size: torch.Tensor,
) -> None:
    """In place: mark ``rows`` that fool the model with margin ``kappa`` and keep the smallest ones."""
    fooled = (logits.argmax(1) != y[rows]) & (m <= -kappa)
    success[rows[fooled]] = True
    better = fooled & (size < best_size[rows])
    best[rows[better]] = x_adv[better].detach()
    best_size[rows[better]] = size[better].detach()


# --------------------------------------------------------------------------- DeepFool


def deepfool(model: nn.Module, x: torch.Tensor, *, overshoot: float = 0.02, max_iter: int = 50) -> torch.Tensor:
    """DeepFool: step to the nearest linearised decision boundary until the predicted label changes.

    At each iteration and for each row still classified as its original prediction ``k0``, the
    class ``k`` minimising ``|z_k - z_k0| / ||grad(z_k - z_k0)||`` is chosen and the row moves onto
    that linearised boundary; the total perturbation is scaled by ``1 + overshoot``. Rows that do
    not change label within ``max_iter`` iterations keep their last iterate.
    """
    n_classes = check_attack_inputs(model, x, None)
    overshoot = check_number("overshoot", overshoot, low=0.0)
    max_iter = check_int("max_iter", max_iter, low=1)
    x = x.detach()
    with eval_mode(model):
        with torch.no_grad():
            original = checked_logits(model, x).argmax(1)
        r_total = torch.zeros_like(x)
        x_adv = x.clone()
        active = torch.ones(x.shape[0], dtype=torch.bool)
        for _ in range(max_iter):
            index = active.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            step = _deepfool_step(model, x_adv[index], original[index], n_classes)
            r_total[index] += step
            x_adv[index] = (x[index] + (1 + overshoot) * r_total[index]).clamp(0.0, 1.0)
            with torch.no_grad():
                active[index] = checked_logits(model, x_adv[index]).argmax(1) == original[index]
    return x_adv.detach()


def _deepfool_step(model: nn.Module, x: torch.Tensor, label: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The minimal step that reaches the nearest linearised boundary, for each row of ``x``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = checked_logits(model, x)
        grads = torch.stack(
            [torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k < n_classes - 1)[0] for k in range(n_classes)],
            dim=1,
        )  # (N, K, ...)
    rows = torch.arange(x.shape[0])
    diff_logit = (logits - logits[rows, label][:, None]).detach()  # (N, K)
    diff_grad = grads - grads[rows, label][:, None]  # (N, K, ...)
    grad_norm = diff_grad.reshape(x.shape[0], n_classes, -1).norm(dim=2)
    distance = diff_logit.abs() / (grad_norm + _TINY)
    distance[rows, label] = math.inf
    nearest = distance.argmin(1)
    w = diff_grad[rows, nearest]
    scale = (diff_logit[rows, nearest].abs() + 1e-4) / (grad_norm[rows, nearest].pow(2) + _TINY)
    return (_per_row(scale, w) * w).detach()


# --------------------------------------------------------------------------- robust accuracy


def _named_attack(name: str) -> Callable[..., torch.Tensor]:
    """The attack function called ``name`` (black-box ones are looked up in ``gdsec.blackbox``)."""
    local = {"fgsm": fgsm, "pgd": pgd, "cw_l2": cw_l2, "deepfool": deepfool}
    if name in local:
        return local[name]
    module = importlib.import_module("gdsec.blackbox")
    return getattr(module, {"square": "square_attack", "spsa": "spsa"}[name])


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | Attack,
    *,
    eps: float | None = None,
    **attack_kwargs: object,
) -> float:
    """Fraction of rows classified correctly both clean and after ``attack``.

    ``attack`` is a name from :data:`ATTACKS` or a callable ``(model, x, y) -> x_adv``. For the
    bounded attacks (fgsm, pgd, square, spsa) ``eps`` is the budget and is required. For the
    minimal-perturbation attacks (cw_l2, deepfool) ``eps``, if given, is an L2 budget: a row whose
    adversarial example needs more than ``eps`` still counts as robust.
    """
    check_attack_inputs(model, x, y)
    if eps is not None:
        eps = check_number("eps", eps, low=0.0)
    if callable(attack):
        x_adv = attack(model, x, y)
        minimal = False
    else:
        name = check_choice("attack", attack, ATTACKS)
        fn = _named_attack(name)
        minimal = name in ("cw_l2", "deepfool")
        if minimal:
            x_adv = fn(model, x, **attack_kwargs) if name == "deepfool" else fn(model, x, y, **attack_kwargs)
        else:
            if eps is None:
                raise ValueError(f"eps must be given for attack {name!r} (its perturbation budget)")
            x_adv = fn(model, x, y, eps, **attack_kwargs)
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        raise ValueError("attack must return a tensor of the same shape as x")
    with torch.no_grad(), eval_mode(model):
        correct = checked_logits(model, x).argmax(1) == y
        survives = checked_logits(model, x_adv).argmax(1) == y
    if minimal and eps is not None:
        survives |= perturbation_norm(x, x_adv, norm="2") > eps + 1e-6
    return (correct & survives).float().mean().item()


def __getattr__(name: str) -> Callable[..., torch.Tensor]:
    """Re-export the gradient-free attacks of :mod:`gdsec.blackbox` (imported lazily: it imports us)."""
    if name in ("square_attack", "spsa"):
        return getattr(importlib.import_module("gdsec.blackbox"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
