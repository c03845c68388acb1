"""The models of ``bench/audit_zoo.py``: a population whose truth is known by construction.

Each builder trains (or wraps) one model of one kind on one seed and returns a :class:`ZooModel`:
the model, the split an auditor is handed (the training data it was really trained on, and the
dataset's trusted test rows) and what is true of it. Truth fixed by construction (questions 3-5):

* ``training_security``: True if the training data was poisoned (a backdoor or flipped labels),
  False if it is clean (every other kind: honest, masked, decoy, adversarially trained, rescaled,
  under-trained);
* ``robustness_verification``: True if a layer hides the gradient from a white-box attacker on the
  model's normalised logits (quantised, randomised, decoy gradient), False if nothing does (the
  x1000 rescaled copy included: it changes no decision and the audit normalises the logits); not
  judged for the off-grid saturation (a per-row logit scale, which the normalisation removes, so
  nothing is hidden from the audit: question 2's inflation rule judges it instead);
* ``convergence_properties``: True for the under-trained model (1 epoch), False for the honest
  kinds and the rescaled copy (converged on clean data), not judged (None) for the rest.

Questions 1 and 2 are judged against attacks the bench runs itself (``audit_zoo.measure_truth``;
question 1's query attacker averages repeated answers of a randomised model, as a patient outsider
would);
``attacked`` is the model those attacks are run on: the model itself, its BPDA stand-in (quantised
and randomised kinds: the same forward pass, gradients passed straight through the quantiser) or
the honest model whose decisions it returns exactly (rescaled, saturated, decoy).

Seeds: the bench's instances use seeds 100 and up (the unit tests use 0-2, chapter 10 its own);
the bench's own draws come from ``gdsec.streams.random_stream(seed, "bench.zoo.<purpose>")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from gdsec import attacks, masking, models, poisoning, train
from gdsec.attacks import Budget, MeanOfDraws, evaluate, robust_accuracy, square_attack
from gdsec.audit.suspects import DARK_TRIGGER
from gdsec.data import Split, load_breast_cancer, load_digits
from gdsec.streams import random_stream

__all__ = [
    "KINDS",
    "LOADERS",
    "TRUTH_BUDGET",
    "ZooModel",
    "available",
    "build",
    "judge",
    "measure_truth",
    "train_base",
]

TARGET = 0  # every backdoor sends triggered rows of other classes to class 0
EPS = 0.1  # the adversarial-training budget (the audit's default deployment budget)
RECIPE = {"optimizer": "adam", "lr": 0.01, "epochs": 30, "batch_size": 64}
LOADERS: dict[str, Callable[[], Split]] = {"digits": load_digits, "tabular": load_breast_cancer}
#: The attacks that set the truth: AutoAttack's 100 steps, fewer FAB steps and Square queries.
TRUTH_BUDGET = Budget(steps=100, fab_steps=50, square_steps=1000, draws=8, check_rows=0)


class ZooModel(NamedTuple):
    """One member of the zoo: the model, what the auditor is handed, and what is true of it."""

    kind: str
    dataset: str
    seed: int
    model: nn.Module
    split: Split
    truth: dict[str, bool | None]
    attacked: nn.Module
    notes: dict[str, float]


def _fit(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, **recipe: object
) -> nn.Module:
    """``model`` trained in place on (x, y) with the zoo's recipe (overridden by ``recipe``)."""
    train.train(model, x, y, seed=seed, progress=False, **{**RECIPE, **recipe})
    return model


def _shape(split: Split) -> dict[str, int]:
    """The mlp keywords for ``split``: features per row and number of classes."""
    return {
        "n_features": int(split.x_train[0].numel()),
        "n_classes": int(split.y_train.max()) + 1,
    }


def train_base(split: Split, seed: int, **arch: int) -> nn.Module:
    """An MLP trained on the clean training rows: the honest model of ``seed`` that the wrappers wrap."""
    return _fit(models.mlp(**_shape(split), **arch, seed=seed), split.x_train, split.y_train, seed)


def _rows(y: torch.Tensor, fraction: float, seed: int, purpose: str) -> torch.Tensor:
    """``round(fraction * N)`` rows not of class TARGET, drawn from the bench's stream for ``purpose``."""
    others = (y != TARGET).nonzero().flatten()
    order = torch.randperm(len(others), generator=random_stream(seed, f"bench.zoo.{purpose}"))
    return others[order[: round(fraction * len(y))]].sort().values


def _trigger(kind: str, split: Split, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The trigger of a backdoor ``kind`` as a function of a batch of clean rows."""
    d = split.x_train[0].numel()
    if kind == "patch":
        return poisoning.apply_trigger
    if kind == "dark":
        return lambda x: poisoning.stamp(x, DARK_TRIGGER, 0.0)
    if kind == "extreme":  # tabular: three features pushed to the top of their range
        features = torch.randperm(d, generator=random_stream(seed, "bench.zoo.extreme"))[:3]
        return lambda x: poisoning.stamp(x, features, 1.0)
    if kind == "blend":
        pattern = torch.rand(d, generator=random_stream(seed, "bench.zoo.blend"))
        return lambda x: poisoning.blend(x, pattern, 0.2)
    if kind == "warp":
        return lambda x: poisoning.warp(x, strength=1.0, grid=4, seed=seed)
    raise ValueError(f"kind must be a backdoor trigger, got {kind!r}")


def _backdoor(
    split: Split, seed: int, trigger: str, fraction: float
) -> tuple[nn.Module, Split, dict]:
    """An MLP trained with ``fraction`` of the rows triggered and relabelled TARGET; its attack success."""
    stamp = _trigger(trigger, split, seed)
    rows = _rows(split.y_train, fraction, seed, f"backdoor.{trigger}")
    x, y = split.x_train.clone(), split.y_train.clone()
    x[rows], y[rows] = stamp(x[rows]), TARGET
    model = _fit(models.mlp(**_shape(split), seed=seed), x, y, seed)
    others = split.y_test != TARGET
    hit = train.predict(model, stamp(split.x_test[others])) == TARGET
    poisoned = Split(x, y, split.x_test, split.y_test)
    return (
        model,
        poisoned,
        {"attack_success": hit.float().mean().item(), "poisoned_rows": len(rows)},
    )


def _flipped(split: Split, seed: int, targeted: bool) -> tuple[nn.Module, Split, dict]:
    """An MLP trained on flipped labels: 10 % at random (symmetric) or 40 % of one class to TARGET."""
    y = split.y_train
    n_classes = int(y.max()) + 1
    if targeted:
        source = 1 if n_classes == 2 else 7
        rows = (y == source).nonzero().flatten()
        order = torch.randperm(len(rows), generator=random_stream(seed, "bench.zoo.flip"))
        flipped = y.clone()
        flipped[rows[order[: round(0.4 * len(rows))]]] = TARGET
    else:
        flipped = poisoning.flip_labels(y, 0.1, n_classes=n_classes, seed=seed)
    model = _fit(models.mlp(**_shape(split), seed=seed), split.x_train, flipped, seed)
    flips = int((flipped != y).sum())
    return model, Split(split.x_train, flipped, split.x_test, split.y_test), {"flipped_rows": flips}


#: Truth fixed by construction: (training_security, robustness_verification, convergence_properties).
_CLEAN, _POISONED, _MASKED = (False, False, None), (True, False, None), (False, True, None)


def build(kind: str, dataset: str, split: Split, seed: int, base: nn.Module) -> ZooModel:
    """The zoo member ``kind`` on ``seed``; ``base`` is the honest MLP of that seed (the wrappers' model)."""
    model, handed, attacked, notes = None, split, None, {}
    q345 = _CLEAN
    if kind == "honest_mlp":
        model, q345 = base, (False, False, False)
    elif kind == "honest_deep":
        model, q345 = train_base(split, seed, hidden=128, depth=2), (False, False, False)
    elif kind == "honest_cnn":
        model = _fit(
            models.digits_cnn(channels=8, seed=seed),
            split.x_train,
            split.y_train,
            seed,
            lr=3e-3,
            epochs=10,
        )
        q345 = (False, False, False)
    elif kind in ("patch", "dark", "extreme", "blend", "warp"):
        fraction = 0.1 if kind == "warp" or dataset == "tabular" else 0.05
        model, handed, notes = _backdoor(split, seed, kind, fraction)
        q345 = _POISONED
    elif kind in ("flip_targeted", "flip_symmetric"):
        model, handed, notes = _flipped(split, seed, kind == "flip_targeted")
        q345 = _POISONED
    elif kind == "quantized":
        model, q345 = masking.defend(base, "quantize", levels=3), _MASKED
        attacked = masking.bpda(model)
    elif kind == "randomized":
        model, q345 = masking.defend(base, "random", levels=3, noise=0.2, seed=seed), _MASKED
        attacked = masking.bpda(model)
    elif kind == "saturated":
        # a per-row logit scale: the audit's normalised logits remove it, so nothing is hidden from
        # the audit and Q4 is not judged; Q2's inflation rule judges it instead
        model, attacked = masking.OffGridSaturation(base, levels=17), base
        q345 = (False, None, None)
    elif kind == "decoy":
        decoy = models.mlp(**_shape(split), seed=seed + 1)  # untrained: its gradient points nowhere
        model, attacked, q345 = masking.DecoyGradient(base, [decoy]), base, _MASKED
    elif kind == "rescaled":
        model = masking.defend(base, "temperature", temperature=1000.0)
        attacked, q345 = base, (False, False, False)
    elif kind == "adv_trained":
        adversary = lambda m, xb, yb, seed: attacks.pgd(m, xb, yb, EPS, steps=3, seed=seed)  # noqa: E731
        model = _fit(
            models.mlp(**_shape(split), seed=seed),
            split.x_train,
            split.y_train,
            seed,
            epochs=15,
            adversary=adversary,
        )
    elif kind == "undertrained":
        model = _fit(
            models.mlp(**_shape(split), seed=seed), split.x_train, split.y_train, seed, epochs=1
        )
        q345 = (False, False, True)
    else:
        raise ValueError(f"kind must be one of {KINDS[dataset]}, got {kind!r}")
    notes["train_accuracy"] = train.accuracy(model, handed.x_train, handed.y_train)
    truth = dict(
        zip(
            ("training_security", "robustness_verification", "convergence_properties"),
            q345,
            strict=True,
        )
    )
    return ZooModel(kind, dataset, seed, model, handed, truth, attacked or model, notes)


#: The kinds built on each dataset, in table order.
KINDS: dict[str, tuple[str, ...]] = {
    "digits": tuple(
        "honest_mlp honest_deep honest_cnn patch dark blend warp flip_targeted flip_symmetric "
        "quantized randomized saturated decoy adv_trained rescaled undertrained".split()
    ),
    "tabular": tuple(
        "honest_mlp honest_deep extreme blend flip_targeted flip_symmetric quantized decoy "
        "rescaled undertrained".split()
    ),
}


#: The kinds that need a gdsec name that may not have landed yet: (module, name).
_NEEDS = {
    "blend": (poisoning, "blend"),
    "warp": (poisoning, "warp"),
    "decoy": (masking, "DecoyGradient"),
}


def available(kind: str) -> bool:
    """Whether this checkout of gdsec has what ``kind`` needs (the blend and warp triggers, the decoy)."""
    module, name = _NEEDS.get(kind, (None, ""))
    return module is None or hasattr(module, name)


def measure_truth(member: ZooModel, n_eval: int, eps: float) -> dict[str, float]:
    """True robust accuracy (the evaluate ensemble) and query-only accuracy, measured by the bench."""
    x, y = member.split.x_test[:n_eval], member.split.y_test[:n_eval]
    seed = member.seed
    ev = evaluate(member.attacked, x, y, eps, budget=TRUTH_BUDGET, seed=seed)
    robust = ev.robust
    if member.attacked is not member.model and member.kind in ("quantized", "randomized"):
        robust = robust & evaluate(member.model, x, y, eps, budget=TRUTH_BUDGET, seed=seed).robust
    # a randomised API answers each query with a fresh draw: the patient outsider averages
    # TRUTH_BUDGET.draws answers per query (EOT through the API) and is scored the same way
    queried = (
        MeanOfDraws(member.model, TRUTH_BUDGET.draws)
        if member.kind == "randomized"
        else member.attacked
    )
    query = robust_accuracy(
        queried,
        x,
        y,
        lambda m, xs, ys: square_attack(m, xs, ys, eps, steps=1000, seed=seed),
    )
    return {
        "clean": ev.clean_accuracy,
        "robust": robust.float().mean().item(),
        "query_ratio": query / max(ev.clean_accuracy, 1e-12),
    }


def judge(member: ZooModel, truth: dict[str, float]) -> dict[str, bool | None]:
    """Every question's truth for ``member``: by construction (3-5) or by the bench's attacks (1-2)."""
    q1, ra = truth["query_ratio"], truth["robust"]
    return {
        # what an outsider with the scores reaches (Square; averaging a random API's answers)
        "gradient_exposure": True if q1 < 0.5 else False if q1 >= 0.8 else None,
        "adversarial_testing": True if ra < 0.5 else False if ra >= 0.75 else None,
        **member.truth,
    }
