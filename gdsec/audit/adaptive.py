"""The audit's view of a model that no rescaling or hidden gradient can fool, and its adaptive attacks.

* :class:`NormalisedLogits` divides the logits by one temperature fitted on the trusted rows: the
  decisions are unchanged, and a copy of the model with its logits multiplied by 1,000 (a saturated
  softmax, chapter 8) gives the same numbers as the original, so scale cannot buy a better severity.
* :func:`adaptive_robust` runs the adaptive attacks of Tramer et al. (2020), scored like the target:
  transfer from a surrogate, and, when the gradient cannot be trusted, BPDA through every step that
  blocks it (:func:`gdsec.attacks.bpda_stand_in`, in a module tree, a ``torch.fx`` graph or
  TorchScript), EOT over a random forward pass, transfer from a student distilled on the model's
  own decisions (:func:`distil_surrogate`) and a decision-based attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from gdsec.attacks import (
    Budget,
    MeanOfDraws,
    apgd,
    bpda_stand_in,
    checked_logits,
)
from gdsec.attacks.batches import in_batches
from gdsec.attacks.checks import logit_scale
from gdsec.attacks.decision import hop_skip_jump
from gdsec.audit.convergence_properties import fit_temperature
from gdsec.models import eval_mode, mlp
from gdsec.streams import random_stream
from gdsec.train import train
from gdsec.validation import check_batch, check_int, check_model, check_number, check_seed

__all__ = [
    "DISTIL_POINTS",
    "DISTIL_STEPS",
    "MAX_VIEW_MARGIN",
    "VIEW_NORM",
    "NormalisedLogits",
    "adaptive_robust",
    "distil_surrogate",
]

#: The median centred logit-row norm of the view without trusted rows: about what calibrated digits
#: models show (MLP 19.3, CNN 20.3), large enough that the softmax is not flat.
VIEW_NORM = 20.0

#: The largest median gap between the two top logits of the view: a model right on every trusted row
#: has its calibrated temperature at 0 (a saturated view); this floor keeps its softmax from
#: saturating (calibrated views: digits MLP and CNN 5.8, a two-class digits MLP 11).
MAX_VIEW_MARGIN = 20.0


class NormalisedLogits(nn.Module):
    """``model``'s logits divided by ONE temperature, fitted once: the same decisions at a scale no
    rescaling can change, with every row's input gradient kept (two classes included).

    With trusted rows ``(x, y)`` the temperature is :func:`fit_temperature`'s (the calibrated one,
    minimising the cross-entropy on them, floored so that the view's median top-two gap is at most
    :data:`MAX_VIEW_MARGIN`): a copy with its logits multiplied by 1,000 gets a
    temperature 1,000 times larger and the same view, and the cross-entropy attacks on the view
    are as strong as on a sensibly trained raw model (a per-row unit-norm view flattened the softmax
    and cost APGD-CE 5-9 points, and mapped any two-logit row to a constant). Without rows (the
    adaptive attacks' surrogates), each call divides by the median centred row norm of its batch
    (:func:`gdsec.attacks.checks.logit_scale`, detached, so gradients pass) over :data:`VIEW_NORM`.
    Taught in chapter 10.
    """

    def __init__(
        self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.model = check_model("model", model)
        if (x is None) != (y is None):
            raise ValueError("x and y must be given together (trusted rows and their labels)")
        self.temperature = None
        if x is not None:
            with torch.no_grad():
                top = checked_logits(model, x).double().topk(2, dim=1).values
            floor = float((top[:, 0] - top[:, 1]).median()) / MAX_VIEW_MARGIN
            self.temperature = max(fit_temperature(model, x, y), floor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` over the view's temperature."""
        z = checked_logits(self.model, x)
        if self.temperature is not None:
            return z / self.temperature
        return z / (logit_scale(z) / VIEW_NORM)


#: About how many Adam steps the distilled surrogate trains, and the random points of each trusted
#: row's eps-ball it learns the model's decisions on (besides the row itself).
DISTIL_STEPS, DISTIL_POINTS = 300, 8

_DISTIL_BATCH = 64  # rows per step of the distilled surrogate's training
_LOCATE_ROWS = 8  # probe rows BPDA's search runs the model on


def distil_surrogate(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    steps: int = DISTIL_STEPS,
    points: int = DISTIL_POINTS,
    seed: int = 0,
) -> nn.Module:
    """A small differentiable student of ``model``'s decisions (labels only) around the rows ``x``.

    The student (a :func:`gdsec.models.mlp` sized to the input) learns ``model``'s predicted class
    on ``x`` and on ``points`` uniform random points of each row's L-infinity ``eps``-ball, for about
    ``steps`` Adam steps of 64 rows: a surrogate that needs no gradient, no score and no training
    data from the model, for when BPDA cannot be built or the gradient cannot be trusted.
    Taught in chapter 10.
    """
    check_model("model", model)
    x = check_batch("x", x, unit=True).detach()
    eps = check_number("eps", eps, low=0.0)
    steps, points = check_int("steps", steps, low=1), check_int("points", points, low=0)
    generator = random_stream(check_seed(seed), "audit.adaptive.distil")
    noise = torch.rand((points, *x.shape), generator=generator, dtype=x.dtype).to(x.device)
    inputs = torch.cat([x, (x + eps * (2 * noise - 1)).clamp(0.0, 1.0).flatten(0, 1)])
    with torch.no_grad(), eval_mode(model):
        logits = checked_logits(model, inputs)
    student = mlp(x[0].numel(), logits.shape[1], hidden=128, seed=seed).to(x.device, x.dtype)
    epochs = max(1, math.ceil(steps * _DISTIL_BATCH / len(inputs)))
    train(
        student,
        inputs,
        logits.argmax(1),
        optimizer="adam",
        lr=0.01,
        epochs=epochs,
        batch_size=_DISTIL_BATCH,
        seed=seed,
        progress=False,
    )
    return student.eval()


def _still_right(score: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows of ``x_adv`` that ``score`` still classifies correctly."""
    with torch.no_grad(), eval_mode(score):
        return checked_logits(score, x_adv).argmax(1) == y


def adaptive_robust(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    standing: torch.Tensor,
    surrogate: nn.Module,
    budget: Budget,
    randomised: bool,
    signs: bool,
    seed: int = 0,
    batch_size: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Per-row robustness after each adaptive attack in turn (each on the rows still ``standing``), and what ran.

    Always: transfer, APGD-CE crafted on ``surrogate``. With warning ``signs`` also BPDA
    (:func:`gdsec.attacks.bpda_stand_in`: any module tree, ``torch.fx`` graph or TorchScript), transfer
    from a student distilled on the model's own decisions (:func:`distil_surrogate`), and the
    decision-based HopSkipJump with ``budget.square_steps`` queries per row. Gradient attacks run on
    normalised logits; a random model is attacked and scored by the mean logits of
    ``budget.draws`` draws (EOT; the deterministic surrogates are not redrawn). Returns the rows
    left after each attack (cumulative) and a note per attack saying how it ran or why it did not.
    Each attack takes ``batch_size`` rows at a time (:func:`gdsec.attacks.batches.in_batches`;
    default all at once).
    Taught in chapter 10.
    """
    score = MeanOfDraws(model, budget.draws) if randomised else model
    robust, after, notes = standing.clone(), {}, {}

    def run(name: str, craft: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        rows = robust.nonzero().squeeze(1)
        if rows.numel():
            chunked = in_batches(lambda _, xs, ys: craft(xs, ys), batch_size)
            robust[rows[~_still_right(score, chunked(score, x[rows], y[rows]), y[rows])]] = False
        after[name] = robust.clone()

    def gradient(
        target: nn.Module, drawn: bool = False
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        view = NormalisedLogits(MeanOfDraws(target, budget.draws) if drawn else target, x, y)
        return lambda xs, ys: apgd(view, xs, ys, eps, steps=budget.steps, seed=seed)

    if signs:
        stand_in = bpda_stand_in(model, x[:_LOCATE_ROWS], seed=seed)
        notes["bpda"] = (
            f"{stand_in.route}: straight-through at {', '.join(stand_in.located)}"
            if stand_in.model is not None
            else f"not built: {stand_in.route}".replace("not built: not built: ", "not built: ")
        )
        if stand_in.model is not None:
            run("bpda", gradient(stand_in.model, drawn=randomised))
    run("transfer", gradient(surrogate))
    notes["transfer"] = (
        "APGD-CE on the surrogate (a reference trained on the trusted split, or the one given)"
    )
    if not signs:
        return after, notes
    run("distilled", gradient(distil_surrogate(score, x, eps, seed=seed)))
    notes["distilled"] = (
        f"APGD-CE on an MLP distilled on the model's decisions ({DISTIL_STEPS} steps)"
    )
    if "bpda" not in after:
        notes["bpda"] += "; a surrogate distilled on the model's decisions was used"
    queries = budget.square_steps
    run(
        "decision",
        lambda xs, ys: hop_skip_jump(score, xs, ys, eps, norm="inf", queries=queries, seed=seed),
    )
    notes["decision"] = f"HopSkipJump on the decisions, {queries} queries per row"
    return after, notes
