"""Small PyTorch models for 8x8 digits and tabular inputs; every one maps inputs to logits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn

from gdsec.streams import seeded_global_rng
from gdsec.validation import check_int

__all__ = ["count_parameters", "digits_cnn", "eval_mode", "logistic_regression", "mlp"]


def _build(builder: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    """Construct a model; with a seed, from its own stream inside a forked RNG (the global torch state is untouched)."""
    if seed is None:
        return builder()
    with seeded_global_rng(seed, "models.init"):
        return builder()


def logistic_regression(
    n_features: int = 64, n_classes: int = 10, *, seed: int | None = 0
) -> nn.Module:
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
    seed: int | None = 0,
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


def digits_cnn(n_classes: int = 10, *, channels: int = 16, seed: int | None = 0) -> nn.Module:
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
