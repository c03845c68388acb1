"""Several copies of one architecture as one batched model: parameters stacked along a leading seed axis.

Activations are shaped (S, B, ...): S copies of the model, each with its own batch of B rows. The common
layers (``nn.Linear``, ``nn.Conv2d``, activations, pooling, ``nn.Flatten``, nested ``nn.Sequential``)
have a hand-written batched forward that does each copy's own arithmetic (one matrix product or one
convolution per copy), so a copy's outputs equal its own forward's; any other architecture falls back
to ``torch.func.vmap`` over ``torch.func.functional_call``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = ["load_stacked", "stack_parameters", "stacked_forward", "unflatten"]

#: Parameter-free elementwise layers: applied to the (S, B, ...) activations as they are.
_ELEMENTWISE = (
    nn.Identity,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
)
#: Parameter-free layers that act on each row on its own: applied to the (S * B, ...) merged batch.
_PER_ROW = (
    *_ELEMENTWISE,
    nn.Flatten,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
)


def stack_parameters(
    models: list[nn.Module],
) -> tuple[torch.Tensor, dict[str, torch.Size], dict[str, torch.Tensor]]:
    """(flat, layout, fixed): ``models``' trainable parameters stacked and laid end to end in one new leaf.

    Parameter ``name`` of copy ``i`` is ``unflatten(flat, layout, fixed)[name][i]``; one leaf keeps the
    optimizer step to a handful of tensor operations. ``fixed`` holds the stacked frozen parameters
    and buffers.
    Used in chapter 3.
    """
    params, buffers = stack_module_state(models)
    layout = {name: p.shape for name, p in params.items() if p.requires_grad}
    flat = torch.cat([params[name].detach().reshape(-1) for name in layout]).requires_grad_(True)
    fixed = {name: p.detach() for name, p in params.items() if name not in layout}
    return flat, layout, {**fixed, **buffers}


def unflatten(
    flat: torch.Tensor, layout: dict[str, torch.Size], fixed: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every stacked parameter and buffer by name: views of ``flat`` for the trainable ones, then ``fixed``.

    Used in chapter 3.
    """
    pieces = flat.split([shape.numel() for shape in layout.values()])
    views = {
        name: piece.view(shape) for (name, shape), piece in zip(layout.items(), pieces, strict=True)
    }
    return {**views, **fixed}


def load_stacked(models: list[nn.Module], params: dict[str, torch.Tensor]) -> None:
    """Copy slice ``i`` of every stacked parameter in ``params`` into ``models[i]`` (in place, no gradients).

    Used in chapter 3.
    """
    with torch.no_grad():
        for i, model in enumerate(models):
            for key, param in model.named_parameters():
                param.copy_(params[key][i])


def _fast(model: nn.Module) -> bool:
    """Whether every layer of ``model`` has a hand-written batched forward."""
    if isinstance(model, nn.Sequential):
        return all(_fast(child) for child in model)
    if isinstance(model, nn.Conv2d):
        return model.padding_mode == "zeros" and model.bias is not None
    if isinstance(model, nn.Linear):
        return model.bias is not None
    if isinstance(model, nn.Flatten) and model.start_dim == 0:
        return False  # it flattens the batch axis too: not a per-row layer
    return isinstance(model, _PER_ROW) and next(model.parameters(), None) is None


def _forward_layer(
    layer: nn.Module, params: dict[str, torch.Tensor], prefix: str, h: torch.Tensor
) -> torch.Tensor:
    """Batched forward of one supported layer on activations shaped (S, B, ...)."""
    s, b = h.shape[:2]
    if isinstance(layer, nn.Sequential):
        for key, child in layer.named_children():
            h = _forward_layer(child, params, f"{prefix}{key}.", h)
        return h
    if isinstance(layer, _ELEMENTWISE):
        return layer(h)
    if isinstance(layer, nn.Flatten) and layer.start_dim == 1 and layer.end_dim == -1:
        return h.flatten(2)
    if isinstance(layer, nn.Linear):
        weight, bias = params[f"{prefix}weight"], params[f"{prefix}bias"]
        if h.dim() == 3:
            return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        flat = h.reshape(s, -1, h.shape[-1])
        out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
        return out.reshape(*h.shape[:-1], out.shape[-1])
    if isinstance(layer, nn.Conv2d):
        weight, bias = params[f"{prefix}weight"], params[f"{prefix}bias"]
        # one convolution per copy: a grouped convolution sums in another order, and Adam amplifies that
        return torch.stack(
            [
                nn.functional.conv2d(
                    h[i],
                    weight[i],
                    bias[i],
                    layer.stride,
                    layer.padding,
                    layer.dilation,
                    layer.groups,
                )
                for i in range(s)
            ]
        )
    out = layer(h.reshape(s * b, *h.shape[2:]))
    return out.reshape(s, b, *out.shape[1:])


def stacked_forward(
    model: nn.Module, tensors: dict[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Outputs (S, B, ...) of the S stacked copies of ``model``'s architecture on inputs ``x`` (S, B, ...).

    ``model`` only supplies the architecture and mode (its own parameters are neither used nor changed);
    ``tensors`` (stacked parameters and buffers by name) comes from :func:`unflatten`.
    Used in chapter 3.
    """
    if _fast(model):
        return _forward_layer(model, tensors, "", x)
    return vmap(lambda t, xb: functional_call(model, t, (xb,)))(tensors, x)
