"""Small PyTorch models for 8x8 digits and tabular inputs; every one maps inputs to logits."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from gdsec.streams import seeded_global_rng
from gdsec.validation import check_int

__all__ = [
    "check_same_architecture",
    "count_parameters",
    "digits_cnn",
    "eval_mode",
    "logistic_regression",
    "mlp",
]

#: Layers whose train-mode output is random or depends on the whole batch: a batched run of several
#: models (``gdsec.seeds``, ``gdsec.aggregation.simulate_batch``) would not train like each one alone.
_UNBATCHABLE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


def _build(builder: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Construct a model from its seed's own stream inside a forked RNG (the global torch state is untouched)."""
    with seeded_global_rng(seed, "models.init"):
        return builder()


def logistic_regression(n_features: int = 64, n_classes: int = 10, *, seed: int = 0) -> nn.Module:
    """Multinomial logistic regression: flatten, then one linear layer to ``n_classes`` logits.

    Taught in chapter 1.
    """
    check_int("n_features", n_features, low=1)
    check_int("n_classes", n_classes, low=2)
    return _build(lambda: nn.Sequential(nn.Flatten(), nn.Linear(n_features, n_classes)), seed)


def mlp(
    n_features: int = 64,
    n_classes: int = 10,
    *,
    hidden: int = 64,
    depth: int = 1,
    activation: str = "relu",
    seed: int = 0,
) -> nn.Module:
    """A fully connected net: ``depth`` hidden layers of width ``hidden``, then logits.

    Taught in chapter 3.
    """
    check_int("n_features", n_features, low=1)
    check_int("n_classes", n_classes, low=2)
    check_int("hidden", hidden, low=1)
    check_int("depth", depth, low=1, high=16)
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    if activation not in acts:
        raise ValueError(f"activation must be one of {list(acts)}, got {activation!r}")

    def builder() -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), acts[activation]()]
            width = hidden
        layers.append(nn.Linear(width, n_classes))
        return nn.Sequential(*layers)

    return _build(builder, seed)


def digits_cnn(n_classes: int = 10, *, channels: int = 16, seed: int = 0) -> nn.Module:
    """A small CNN for (N, 1, 8, 8) digits: two 3x3 convolutions, a pool, a linear head.

    Taught in chapter 5.
    """
    check_int("n_classes", n_classes, low=2)
    check_int("channels", channels, low=1, high=256)
    return _build(
        lambda: nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * channels * 16, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        ),
        seed,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters in ``model``.

    Used in chapter 9.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the duration of the block, then restore the mode it had.

    Every submodule gets its own flag back, so a fresh wrapper around a model in eval mode (a BPDA or
    EOT wrapper, say) does not switch the wrapped model to training mode on exit.

    Used in chapters 5, 7, 8, 9 and 10.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def check_same_architecture(name: str, models: object) -> list[nn.Module]:
    """``models`` as a list if it is a non-empty sequence of models of one architecture; else ``ValueError``.

    One architecture: the same class and the same parameter names, shapes and dtypes, at least one
    trainable parameter, and no dropout or batch norm (their train-mode output is random or depends on
    the whole batch, so a batched run of the models would not train like each model alone).
    Used in chapters 3 and 4.
    """
    if isinstance(models, nn.Module) or not isinstance(models, Sequence) or not models:
        raise ValueError(f"{name} must be a non-empty list of models, got {type(models).__name__}")
    for i, model in enumerate(models):
        if not isinstance(model, nn.Module):
            raise ValueError(f"{name}[{i}] must be a torch.nn.Module, got {type(model).__name__}")
    first = [(key, tuple(p.shape), p.dtype) for key, p in models[0].named_parameters()]
    for i, model in enumerate(models):
        bad = [type(m).__name__ for m in model.modules() if isinstance(m, _UNBATCHABLE)]
        if bad:
            raise ValueError(
                f"{name} must be models without dropout or batch norm, got {', '.join(bad)}"
            )
        these = [(key, tuple(p.shape), p.dtype) for key, p in model.named_parameters()]
        if type(model) is not type(models[0]) or these != first:
            raise ValueError(
                f"{name} must be models of one architecture; model {i} differs from model 0"
            )
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"{name} must be models with at least one trainable parameter")
    return list(models)
