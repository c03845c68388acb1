"""Train one copy of a model per seed, all seeds together as one batched computation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from gdsec.models import check_same_architecture
from gdsec.optim import OPTIMIZERS, TORCH_HYPERPARAMETERS, torch_optimizer
from gdsec.seeds.stacked import (
    load_stacked,
    stack_parameters,
    stacked_forward,
    unflatten,
)
from gdsec.streams import random_stream
from gdsec.validation import (
    check_batch,
    check_choice,
    check_int,
    check_keywords,
    check_labels,
    check_number,
)

__all__ = ["check_seeds", "train_seeds"]


Data = torch.Tensor | Sequence[torch.Tensor]


def check_seeds(seeds: object) -> list[int]:
    """``seeds`` as a list of distinct ints >= 0, or ``ValueError`` naming ``seeds``.

    Used in chapter 3.
    """
    if isinstance(seeds, str | bytes | torch.Tensor) or not isinstance(seeds, Sequence):
        raise ValueError(
            f"seeds must be a list or range of distinct integers >= 0, got {type(seeds).__name__}"
        )
    if len(seeds) == 0:
        raise ValueError("seeds must hold at least one seed, got an empty sequence")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seeds must hold integers >= 0, got {seed!r}")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ValueError(
            f"seeds must be distinct (each seed is one independent run), got {repeated} more than once"
        )
    return [int(s) for s in seeds]


def _per_seed(name: str, value: object, count: int) -> list[object] | None:
    """The per-seed list ``value`` (checked to hold ``count`` items), or None for one shared tensor."""
    if isinstance(value, torch.Tensor):
        return None
    if not isinstance(value, list | tuple):
        raise ValueError(
            f"{name} must be a tensor or a list of tensors (one per seed), got {type(value).__name__}"
        )
    if len(value) != count:
        raise ValueError(f"{name} must hold one tensor per seed ({count}), got {len(value)}")
    return list(value)


def _check_data(x: Data, y: Data, count: int) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    """(x, y) as tensors, stacked along a seed axis when given per seed, and which of them are per seed."""
    xs, ys = _per_seed("x", x, count), _per_seed("y", y, count)
    xs_checked = (
        [check_batch(f"x[{i}]", t) for i, t in enumerate(xs)] if xs else [check_batch("x", x)]
    )
    shape = tuple(xs_checked[0].shape)
    for i, t in enumerate(xs_checked):
        if tuple(t.shape) != shape or t.dtype != xs_checked[0].dtype:
            raise ValueError(
                f"x must have the same shape and dtype for every seed: x[{i}] is {tuple(t.shape)}, x[0] is {shape}"
            )
    n = shape[0]
    ys_checked = (
        [check_labels(f"y[{i}]", t, n=n) for i, t in enumerate(ys)]
        if ys
        else [check_labels("y", y, n=n)]
    )
    x_out = torch.stack(xs_checked) if xs else xs_checked[0]
    y_out = torch.stack(ys_checked) if ys else ys_checked[0]
    return x_out, y_out, xs is not None, ys is not None


def _batch(data: torch.Tensor, per_seed: bool, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (S, B) of each seed's data, shaped (S, B, ...)."""
    if not per_seed:
        return data[index]
    return data[torch.arange(index.shape[0]).unsqueeze(1), index]


def train_seeds(
    model_fn: Callable[..., nn.Module],
    x: Data,
    y: Data,
    *,
    seeds: Sequence[int],
    optimizer: str = "sgd",
    lr: float,
    epochs: int,
    batch_size: int | None = None,
    **hyper: float,
) -> list[nn.Module]:
    """One model ``model_fn(seed=s)`` per seed ``s``, trained like ``gdsec.train.train(..., seed=s)``, all at once.

    The copies are stacked (``torch.func.stack_module_state``) and trained as one batched model: one
    forward, one backward and one optimizer step per mini-batch for all seeds. Each seed draws its own
    mini-batch order exactly as ``train.train`` does (a ``torch.randperm`` per epoch from
    ``random_stream(s, "train.order")``; full batches in order), and the update is ``torch.optim``'s own (via
    ``gdsec.optim.torch_optimizer``; every rule is elementwise, so stacking does not change it). So
    model ``i`` is the model ``train.train(model_fn(seed=seeds[i]), x, y, seed=seeds[i], ...)`` gives,
    whatever the other seeds are. ``x`` and ``y`` are one tensor shared by every seed, or a list with
    one tensor per seed (same shapes), e.g. data poisoned with seed ``s``. ``hyper`` holds the
    optimizer's hyper-parameters (``beta``, ``alpha``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``).
    Returns ordinary independent ``nn.Module``s in eval mode, in the order of ``seeds``; the inputs are
    not modified. Models with dropout or batch norm are refused (``ValueError``).
    Taught in chapter 3.
    """
    if not callable(model_fn):
        raise ValueError(
            f"model_fn must be callable as model_fn(seed=s), got {type(model_fn).__name__}"
        )
    seeds = check_seeds(seeds)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_keywords(
        f"train_seeds with optimizer {optimizer!r}", hyper, TORCH_HYPERPARAMETERS[optimizer]
    )
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("epochs", epochs, low=1)
    data_x, data_y, x_per_seed, y_per_seed = _check_data(x, y, len(seeds))
    n = data_x.shape[1] if x_per_seed else data_x.shape[0]
    if batch_size is not None:
        check_int("batch_size", batch_size, low=1, high=n)
    models = [model_fn(seed=seed) for seed in seeds]
    for model in models:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model_fn must return a torch.nn.Module, got {type(model).__name__}")
    check_same_architecture("model_fn", models)
    flat, layout, fixed = stack_parameters(models)
    opt = torch_optimizer(optimizer, [flat], lr=lr, **hyper)
    generators = [random_stream(seed, "train.order") for seed in seeds]
    size = n if batch_size is None else batch_size
    architecture = models[0].train()
    for _ in range(epochs):
        if size < n:
            order = torch.stack([torch.randperm(n, generator=g) for g in generators])
        else:
            order = torch.arange(n).expand(len(seeds), n)
        for begin in range(0, n, size):
            index = order[:, begin : begin + size]
            xb, yb = _batch(data_x, x_per_seed, index), _batch(data_y, y_per_seed, index)
            logits = stacked_forward(architecture, unflatten(flat, layout, fixed), xb)
            rows = index.shape[1]
            losses = nn.functional.cross_entropy(
                logits.flatten(0, 1), yb.flatten(), reduction="none"
            )
            losses = losses.view(len(seeds), rows).mean(1)
            if not torch.isfinite(losses).all():
                bad = [
                    s
                    for s, ok in zip(seeds, torch.isfinite(losses).tolist(), strict=True)
                    if not ok
                ]
                raise FloatingPointError(
                    f"training loss became non-finite for seeds {bad} (lr={lr} too large?)"
                )
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
    load_stacked(models, unflatten(flat, layout, fixed))
    return [model.eval() for model in models]
