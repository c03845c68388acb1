"""Audit question 3, training security: could the training data have steered the descent?

Clean reference models (several seeds, trained on the trusted split) say what each training row
looks like. Two reference-like models trained on one half of the trusted split each say what an
honest row's loss and an honest label's dispute rate are on held-out rows: the loss scan flags the
training rows whose loss under the references is above the ``scan_quantile`` of those held-out
losses (few or none on clean data), and :func:`gdsec.poisoning.label_disputes` names a label
pattern (a class-to-class flip, dirty-label rows of many classes in one class, symmetric noise)
when a class's labels are disputed far more often than held-out rows are.

For each class among the flagged rows a trigger is rebuilt at several feature counts
(``trigger_sizes``): the features whose mean differs most from the other classes' mean, in either
direction, stamped at the flagged rows' mean value. Each is confirmed on the model: how many clean
training rows of other classes does it send to that class, beyond the strictest clean reference
on the same stamp (``rate - max(clean)``)? The references get the same stamps, so taking the
best of several sizes raises their rates too. A class-to-class flip is confirmed the same way on
the trusted rows of its source class.
"""

from __future__ import annotations

import torch
from torch import nn

from gdsec.audit.config import AuditConfig, provenance
from gdsec.audit.references import reference_models
from gdsec.audit.report import SEVERITIES, Finding
from gdsec.data import Split
from gdsec.models import eval_mode
from gdsec.poisoning import LabelDisputes, detect_poison, label_disputes, rebuild_trigger, stamp
from gdsec.streams import random_stream
from gdsec.train import predict

__all__ = ["audit_training_security", "trigger_severity"]

_MIN_ROWS = 3  # a class needs this many flagged rows before a trigger is rebuilt from them


def _rate(model: nn.Module, x: torch.Tensor, target: int) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``target``."""
    return (predict(model, x) == target).float().mean().item() if len(x) else 0.0


def _probabilities(models: tuple[nn.Module, ...], x: torch.Tensor) -> torch.Tensor:
    """The mean softmax of ``models`` on ``x``."""
    out = []
    for model in models:
        with eval_mode(model), torch.no_grad():
            out.append(torch.softmax(model(x), dim=1))
    return torch.stack(out).mean(0)


def _held_out(split: Split, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses and predictions on every trusted row of a reference-like model trained on the other half."""
    x, y = split.x_test, split.y_test
    folds = random_stream(seed, "audit.training_security.folds")
    order = torch.randperm(len(y), generator=folds).to(y.device)
    halves = (order[: len(y) // 2], order[len(y) // 2 :])
    losses = torch.empty(len(y), dtype=x.dtype, device=x.device)
    predicted = torch.empty_like(y)
    for fit, held in (halves, halves[::-1]):
        trusted = Split(x[held], y[held], x[fit], y[fit])  # references train on the split's x_test
        (model,) = reference_models(trusted, n_seeds=1, seed=seed)
        p = _probabilities((model,), x[held])
        losses[held] = -p.gather(1, y[held, None]).squeeze(1).clamp_min(1e-12).log()
        predicted[held] = p.argmax(1)
    return losses, predicted


def _trigger(
    model: nn.Module,
    split: Split,
    flagged: torch.Tensor,
    references: tuple[nn.Module, ...],
    target: int,
    sizes: tuple[int, ...],
) -> dict:
    """The trigger rebuilt for ``target`` (one per count in ``sizes``) moving most rows beyond the references."""
    x, y = split.x_train, split.y_train
    unflagged = torch.ones(len(y), dtype=torch.bool, device=y.device)
    unflagged[flagged] = False
    probe_rows = x[unflagged & (y != target)]
    best: dict = {}
    for size in sorted({min(s, x[0].numel()) for s in sizes}):
        features, values = rebuild_trigger(x, y, flagged, target, max_features=size)
        probe = stamp(probe_rows, features, values)
        clean = [_rate(r, probe, target) for r in references]
        rate = _rate(model, probe, target)
        if not best or rate - max(clean) > best["excess"]:
            best = {"target": target, "features": features, "values": values, "rate": rate}
            best |= {"clean": clean, "excess": rate - max(clean), "rows": len(probe), "size": size}
    return best


def trigger_severity(excess: float, rate: float, *, margin: float, high: float) -> str:
    """Severity of a rebuilt trigger that moves ``rate`` of the rows, ``excess`` more than on any clean reference.

    "high" from ``high`` excess (and half of the rows moved), "medium" from ``margin``, else "low".
    Taught in chapter 10.
    """
    if excess >= high and rate >= 0.5:
        return "high"
    return "medium" if excess >= margin else "low"


def _flip(
    model: nn.Module, split: Split, references: tuple[nn.Module, ...], disputes: LabelDisputes
) -> dict:
    """How many trusted rows of a flip's source class the model (and each reference) sends to its target."""
    if disputes.pattern != "flip":
        return {"rate": 0.0, "clean": [], "excess": 0.0, "rows": 0}
    rows = split.x_test[split.y_test == disputes.source]
    clean = [_rate(r, rows, disputes.target) for r in references]
    rate = _rate(model, rows, disputes.target)
    return {"rate": rate, "clean": clean, "excess": rate - max(clean), "rows": len(rows)}


def _label_text(d: LabelDisputes) -> str:
    """One sentence naming the label pattern the references see in the training data."""
    if d.pattern == "symmetric":
        return (
            f"The references dispute {d.rows} training labels ({d.share:.0%}) in every class, against "
            f"{d.expected:.0%} on held-out trusted rows: symmetric label noise."
        )
    if d.pattern == "none":
        return (
            f"The references dispute {d.share:.0%} of the training labels, as expected from their "
            f"held-out error ({d.expected:.0%}): no label pattern."
        )
    what = "a class-to-class flip" if d.pattern == "flip" else "dirty-label rows of several classes"
    return (
        f"{d.rows} rows labelled {d.target} ({d.share:.0%} of the class, {d.expected:.0%} expected) look like "
        f"another class to the references, {d.source_rows} of them like {d.source}: {what}."
    )


def _verdict(
    trigger: dict, flip: dict, disputes: LabelDisputes, config: AuditConfig
) -> tuple[str, str]:
    """(severity, explanation) from the strongest of the rebuilt trigger, the confirmed flip and the label pattern."""
    grade = {"margin": config.trigger_margin, "high": config.trigger_high}
    by_trigger = trigger_severity(trigger["excess"], trigger["rate"], **grade) if trigger else "low"
    by_flip = trigger_severity(flip["excess"], flip["rate"], **grade)
    by_labels = "low" if disputes.pattern == "none" else "medium"
    severity = max(by_trigger, by_flip, by_labels, key=SEVERITIES.index)
    if severity == "low":
        return severity, "No sign of poisoning in this scan."
    if by_flip == severity and disputes.pattern == "flip":
        return severity, (
            f"A label flip {disputes.source} -> {disputes.target}: the model sends {flip['rate']:.0%} of "
            f"{flip['rows']} trusted {disputes.source}s to {disputes.target}, the references at most "
            f"{max(flip['clean']):.0%}."
        )
    if by_trigger == severity:
        return severity, (
            f"A backdoor into class {trigger['target']}: a {len(trigger['features'])}-feature trigger "
            f"rebuilt from the flagged rows explains them."
        )
    return severity, f"Label poisoning ({disputes.pattern}); no rebuilt trigger moves the model."


def _recommendation(severity: str) -> str:
    """What to do about a training-security finding of ``severity``."""
    return {
        "high": "Treat the model as poisoned: quarantine the flagged rows, trace their provenance, retrain from "
        "trusted data and re-run this scan.",
        "medium": "Inspect the flagged rows and the disputed labels by hand and keep provenance for every "
        "training row.",
        "low": "No sign of poisoning in this scan; that is necessary, never sufficient (a trigger this scan "
        "cannot rebuild, or clean-label poison, may remain). Keep data provenance and re-scan new data.",
    }[severity]


def audit_training_security(model: nn.Module, split: Split, config: AuditConfig) -> Finding:
    """Scan the training data for poison and disputed labels, rebuild triggers, confirm them against clean references.

    Taught in chapter 10.
    """
    references = config.references or reference_models(
        split, n_seeds=config.n_references, seed=config.seed
    )
    x, y = split.x_train, split.y_train
    held_loss, held_pred = _held_out(split, config.seed)
    seen = _probabilities(references if config.reference is None else (config.reference,), x)
    scores = -seen.gather(1, y[:, None]).squeeze(1).clamp_min(1e-12).log()
    threshold = torch.quantile(held_loss, config.scan_quantile).item()
    if config.poison_method == "loss":
        flagged = (scores > threshold).nonzero().flatten()
    else:
        flagged = detect_poison(
            model, x, y, method="spectral", expected_fraction=config.expected_fraction
        ).flagged
    disputes = label_disputes(
        y, seen.argmax(1), split.y_test, held_pred, margin=config.label_margin
    )
    counts = torch.bincount(y[flagged], minlength=int(y.max()) + 1)
    suspect = int(counts.argmax())
    share = counts[suspect].item() / max(len(flagged), 1)
    found = [
        _trigger(model, split, flagged, references, c, config.trigger_sizes)
        for c in (counts >= _MIN_ROWS).nonzero().flatten().tolist()
    ]
    best = max(found, key=lambda c: c["excess"]) if found else {}
    flip = _flip(model, split, references, disputes)
    severity, verdict = _verdict(best, flip, disputes, config)
    rate, clean = (best["rate"], max(best["clean"])) if best else (0.0, 0.0)
    tried = (
        f"The best trigger rebuilt from the flagged rows ({len(best['features'])} features) sends "
        f"{rate:.0%} of {best['rows']} clean rows of other classes to class {best['target']}; on "
        f"{len(references)} clean reference models the same stamp reaches at most {clean:.0%}."
        if best
        else f"No class has {_MIN_ROWS} flagged rows to rebuild a trigger from."
    )
    summary = (
        f"{verdict} The scan flags {len(flagged)} of {len(y)} training rows, {share:.0%} of them labelled "
        f"{suspect}. {_label_text(disputes)} {tried}"
    )
    evidence = {
        "method": config.poison_method,
        "scan_threshold": threshold,
        "flagged_rows": len(flagged),
        "suspected_class": suspect,
        "share_of_flagged_in_class": share,
        "trigger_class": best.get("target", suspect),
        "trigger_size": best.get("size", 0),
        "trigger_features": best["features"].tolist() if best else [],
        "trigger_values": [round(v, 4) for v in best["values"].tolist()] if best else [],
        "trigger_success": rate,
        "clean_reference_success": best.get("clean", []),
        "excess_over_clean": best.get("excess", 0.0),
        "label_pattern": disputes.pattern,
        "label_target": disputes.target,
        "label_source": disputes.source,
        "disputed_rows": disputes.rows,
        "disputed_share": disputes.share,
        "expected_disputed_share": disputes.expected,
        "label_excess": disputes.excess,
        "flip_success": flip["rate"],
        "flip_clean_success": flip["clean"],
        "flip_excess": flip["excess"],
        "flagged_index": flagged.tolist(),
        **provenance(
            len(y),
            config,
            ("scan_quantile", "label_margin", "trigger_sizes", "expected_fraction", "n_references"),
        ),
    }
    return Finding("training_security", severity, summary, evidence, _recommendation(severity))
