"""The saved model as ``gdsec-audit`` audits it: probed for what the checks cannot audit, and wrapped
so that the audit sees a model of [0, 1] pixel inputs returning float32 logits.

:func:`prepare_model` refuses (``ValueError``) a ``torch.export`` program captured in training mode
and a model whose output for a row depends on the other rows of its batch; it switches a
TorchScript model saved in training mode to eval mode, casts float64 logits to float32, applies the
per-channel normalisation (``--mean``/``--std``) the model expects, and notes a model whose logits
have no gradient path to its inputs (audited: every gradient is zero, so the gradient-free,
transfer and decision-based attacks decide). Every change is returned as a note for the report.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gdsec.data import Split
from gdsec.models import eval_mode

__all__ = ["PixelModel", "gradient_reaches_input", "prepare_model", "training_mode_ops"]


class PixelModel(nn.Module):
    """``model`` fed ``(x - mean) / std`` per channel (axis 1) and returning float32 logits.

    The audit attacks this wrapper, so every budget stays in the [0, 1] pixel units of the data.
    Taught in chapter 10.
    """

    def __init__(
        self, model: nn.Module, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together")
        if std is not None and not bool((std > 0).all()):
            raise ValueError(f"std must be positive, got {std.tolist()}")
        self.model = model
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the units the wrapped model expects."""
        if self.mean is None:
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits of the wrapped model on the normalised ``x``."""
        return self.model(self.normalise(x)).float()


def training_mode_ops(model: nn.Module) -> list[str]:
    """The graph nodes of a ``torch.export`` program that run batch norm with batch statistics.

    Used in chapter 10.
    """
    if not isinstance(model, torch.fx.GraphModule):
        return []
    found = []
    for node in model.graph.nodes:
        schema = getattr(node.target, "_schema", None)
        if node.op != "call_function" or schema is None or "batch_norm" not in schema.name:
            continue
        names = [a.name for a in schema.arguments]
        values = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
        if values.get("training") is True:
            found.append(f"{node.name} ({schema.name}, training=True)")
    return found


def _batch_dependent(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether a deterministic ``model`` gives row 0 different logits alone than within ``x``."""
    with eval_mode(model), torch.no_grad():
        batch, again, alone = model(x), model(x), model(x[:1])
    deterministic = torch.equal(batch, again)
    return deterministic and not torch.allclose(alone[0], batch[0], rtol=1e-3, atol=1e-4)


def gradient_reaches_input(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the logits of ``model`` on ``x`` have a gradient path back to ``x``.

    Taught in chapter 10.
    """
    probe = x.detach().clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        out = model(probe)
        if not out.requires_grad:
            return False
        (grad,) = torch.autograd.grad(out.sum(), probe, allow_unused=True)
    return grad is not None


def _channel_stats(
    name: str, values: Sequence[float] | None, x: torch.Tensor
) -> torch.Tensor | None:
    """``values`` as float32, one entry per channel of ``x``, on its device; or ``ValueError`` naming ``name``."""
    if values is None:
        return None
    channels = x.shape[1]
    if len(values) not in (1, channels):
        raise ValueError(
            f"--{name}: DATA has {channels} channel(s) on axis 1, got {len(values)} value(s)"
        )
    values = list(values) * (channels // len(values))
    return torch.tensor(values, dtype=torch.float32, device=x.device)


def prepare_model(
    model: nn.Module,
    split: Split,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[nn.Module, list[str]]:
    """The model the audit attacks, and notes on every change; ``ValueError`` for what it cannot audit.

    Taught in chapter 10.
    """
    x = split.x_test[:16]
    if (mean is None) != (std is None):
        raise ValueError("--mean and --std must be given together")
    mean_t, std_t = _channel_stats("mean", mean, x), _channel_stats("std", std, x)
    if std_t is not None and not bool((std_t > 0).all()):
        raise ValueError(f"--std must be positive, got {list(std)}")
    ops = training_mode_ops(model)
    if ops:
        raise ValueError(
            f"MODEL is a torch.export program captured in training mode: {ops[0]} normalises with "
            "the batch's statistics; export it after model.eval()"
        )
    notes = []
    if isinstance(model, torch.jit.ScriptModule) and any(m.training for m in model.modules()):
        model.eval()
        notes.append("MODEL was saved in training mode; audited in eval mode (model.eval())")
    wrapped = PixelModel(model, mean_t, std_t)
    with eval_mode(model), torch.no_grad():
        dtype = model(wrapped.normalise(x[:2])).dtype
    if dtype != torch.float32:
        notes.append(f"MODEL returns {dtype} logits; audited as float32")
    if mean_t is not None:
        notes.append(f"inputs normalised per channel with mean {list(mean)} and std {list(std)}")
    if _batch_dependent(wrapped, x):
        raise ValueError(
            "MODEL gives a row different logits alone than within a batch (batch statistics, "
            "e.g. batch norm in training mode); save it after model.eval()"
        )
    if not gradient_reaches_input(wrapped, x):
        notes.append(
            "MODEL's logits have no gradient path to its inputs (a defence computed under "
            "torch.no_grad or detached): that alone masks gradients (chapter 8); every gradient "
            "attack sees zero, and the gradient-free, transfer and decision-based attacks decide"
        )
    needed = dtype != torch.float32 or mean_t is not None
    return (wrapped if needed else model), notes
