"""A gradient-security audit: five questions about a trained model, each answered with measured evidence.

:func:`audit` runs one check per question and returns an :class:`AuditReport` (one
:class:`Finding` each: severity, evidence, recommendation) that renders as a table in a notebook
and exports to Markdown and JSON. The checks call the course's tested tools rather than repeating
them: attacks from :mod:`gdsec.attacks` and :mod:`gdsec.blackbox`, the poison scan of
:mod:`gdsec.poisoning`, the masking sanity checks of :mod:`gdsec.masking` and the sharpness of
:mod:`gdsec.landscape`. Every check can be replaced (``checks=``), which keeps tests fast and lets
an auditor plug in a stronger test.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from gdsec.data import Split
from gdsec.models import eval_mode
from gdsec.validation import (
    check_choice,
    check_fraction,
    check_int,
    check_labels,
    check_model,
    check_number,
)

__all__ = [
    "EXPOSURES",
    "QUESTIONS",
    "SEVERITIES",
    "AuditConfig",
    "AuditReport",
    "Finding",
    "audit",
    "check_adversarial_testing",
    "check_convergence_properties",
    "check_gradient_exposure",
    "check_robustness_verification",
    "check_training_security",
    "reconstruct_trigger",
    "reference_model",
    "stamp",
]

#: The five audit questions, keyed by the check that answers them (paraphrasing the source article).
QUESTIONS: dict[str, str] = {
    "gradient_exposure": "What can an outsider learn or do with what the model reveals (labels, scores, logits, gradients)?",
    "adversarial_testing": "How does the model hold up against the strongest gradient-based and query-based attacks?",
    "training_security": "Could the training data have steered the descent (poisoning, a backdoor)?",
    "robustness_verification": "Is the measured robustness real, or are the gradients merely hidden?",
    "convergence_properties": "Where did training stop, and what kind of minimum is it?",
}
SEVERITIES = ("low", "medium", "high")
#: What a deployed model may return to its callers, from least to most revealing.
EXPOSURES = ("labels", "scores", "logits", "gradients")
_CHAPTERS = {
    "gradient_exposure": "chapters 8-9",
    "adversarial_testing": "chapters 5-6",
    "training_security": "chapters 3-4",
    "robustness_verification": "chapter 8",
    "convergence_properties": "chapters 1 and 7",
}


@dataclass(frozen=True)
class Finding:
    """The answer to one audit question: a severity, the measured evidence and what to do about it."""

    question: str
    severity: str
    summary: str
    evidence: dict[str, object]
    recommendation: str

    @property
    def text(self) -> str:
        """The question this finding answers, in words."""
        return QUESTIONS.get(self.question, self.question)


def _format(value: object) -> str:
    """Short human-readable form of one evidence value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.3g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_format(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def _shown(evidence: Mapping[str, object]) -> dict[str, object]:
    """The evidence items short enough for a table row (long lists stay in the JSON export)."""
    return {k: v for k, v in evidence.items() if not (isinstance(v, list | tuple) and len(v) > 8)}


def _jsonable(value: object) -> object:
    """``value`` with infinities as strings and tuples as lists, so that ``json.dumps`` is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


_COLOURS = {"low": "#009E73", "medium": "#E69F00", "high": "#D55E00"}


@dataclass(frozen=True)
class AuditReport:
    """Findings for the five audit questions about one model; a table in notebooks, Markdown, JSON."""

    name: str
    findings: tuple[Finding, ...]
    settings: dict[str, object] = field(default_factory=dict)

    def finding(self, question: str) -> Finding:
        """The finding that answers ``question`` (a key of ``QUESTIONS``)."""
        for item in self.findings:
            if item.question == question:
                return item
        raise ValueError(f"question must be one of {[f.question for f in self.findings]}, got {question!r}")

    @property
    def severities(self) -> dict[str, str]:
        """Question -> severity, in audit order."""
        return {f.question: f.severity for f in self.findings}

    @property
    def worst(self) -> str:
        """The highest severity among the findings."""
        return max((f.severity for f in self.findings), key=SEVERITIES.index)

    def to_dict(self) -> dict[str, object]:
        """Plain data: name, settings and every finding with its full evidence."""
        return _jsonable({"name": self.name, "settings": self.settings, "findings": [asdict(f) for f in self.findings]})

    def to_json(self, *, indent: int = 2) -> str:
        """The report as strict JSON (infinities written as strings)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_markdown(self) -> str:
        """The report as a Markdown table, one row per question, ready to paste into a ticket."""
        lines = [
            f"### Audit of {self.name}",
            "",
            "| # | question | severity | evidence | recommendation |",
            "|---|---|---|---|---|",
        ]
        for i, f in enumerate(self.findings, start=1):
            evidence = "; ".join(f"{k} = {_format(v)}" for k, v in _shown(f.evidence).items())
            advice = f"{f.recommendation} (See {_CHAPTERS.get(f.question, 'the course')}.)"
            cells = [str(i), f.text, f"**{f.severity}**", f"{f.summary} ({evidence})", advice]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        return "\n".join(lines) + "\n"

    def _repr_html_(self) -> str:
        """An HTML table for Jupyter: severity colour-coded, evidence listed under each summary."""
        rows = []
        for i, f in enumerate(self.findings, start=1):
            evidence = "<br>".join(
                f"<code>{html.escape(k)}</code> = {html.escape(_format(v))}" for k, v in _shown(f.evidence).items()
            )
            badge = (
                f'<span style="background:{_COLOURS.get(f.severity, "#777")};color:white;'
                f'padding:1px 6px;border-radius:3px">{html.escape(f.severity)}</span>'
            )
            rows.append(
                f'<tr style="vertical-align:top"><td>{i}</td><td>{html.escape(f.text)}</td><td>{badge}</td>'
                f"<td>{html.escape(f.summary)}<br><small>{evidence}</small></td>"
                f"<td>{html.escape(f.recommendation)}<br><small>See {_CHAPTERS.get(f.question, 'the course')}.</small></td></tr>"
            )
        head = "".join(f"<th>{h}</th>" for h in ("#", "question", "severity", "evidence", "recommendation"))
        return (
            f"<p><b>Audit of {html.escape(self.name)}</b> (worst finding: {html.escape(self.worst)})</p>"
            f'<table style="font-size:0.85em;text-align:left"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )


@dataclass(frozen=True)
class AuditConfig:
    """The audit's settings: threat model, budgets and thresholds (all stated in the report)."""

    exposure: str = "logits"
    eps: float = 0.1
    eps_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    n_eval: int = 200
    pgd_steps: int = 20
    queries: int = 300
    expected_fraction: float = 0.05
    poison_method: str = "loss"
    reference: nn.Module | None = None
    surrogate: nn.Module | None = None
    trigger_pixels: int = 4
    sharpness_rows: int = 500
    gradient_tol: float = 0.1
    generalisation_gap: float = 0.1
    seed: int = 0

    def public(self) -> dict[str, object]:
        """The settings worth printing (models are named, not dumped)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("reference", "surrogate")}
        out["reference"] = "given" if self.reference is not None else "trained on the trusted split"
        out["surrogate"] = "given" if self.surrogate is not None else "none"
        return out


Check = Callable[[nn.Module, Split, AuditConfig], Finding]


def _eval_rows(data: Split, config: AuditConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_eval`` rows of the held-out split, on which attacks are measured."""
    n = min(config.n_eval, data.x_test.shape[0])
    return data.x_test[:n], data.y_test[:n]


def _level(value: float, *, high: float, medium: float) -> str:
    """'high' when ``value`` is below ``high``, 'medium' below ``medium``, else 'low'."""
    return "high" if value < high else "medium" if value < medium else "low"


def _gradient_leak(model: nn.Module, data: Split, rows: int = 2) -> float:
    """Mean DLG reconstruction error over the first ``rows`` training examples, each from its own gradient."""
    from gdsec.leakage import client_gradients, dlg, reconstruction_errors

    n_classes = int(data.y_train.max().item()) + 1
    errors = []
    for i in range(min(rows, data.x_train.shape[0])):
        x, y = data.x_train[i : i + 1], data.y_train[i : i + 1]
        try:
            x_rec, _ = dlg(model, client_gradients(model, x, y), tuple(x.shape), n_classes=n_classes)
        except ValueError:  # a model without a recognisable last layer: DLG's label inference does not apply
            return math.nan
        errors.append(reconstruction_errors(x_rec, x).item())
    return sum(errors) / len(errors)


def check_gradient_exposure(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """What the exposed interface allows: a white-box (PGD) against a query-only (Square) attacker."""
    from gdsec.attacks import robust_accuracy
    from gdsec.train import accuracy

    x, y = _eval_rows(data, config)
    clean = accuracy(model, x, y)
    whitebox = robust_accuracy(model, x, y, "pgd", eps=config.eps, steps=config.pgd_steps, seed=config.seed)
    query = robust_accuracy(model, x, y, "square", eps=config.eps, queries=config.queries, seed=config.seed)
    achievable = {"gradients": min(whitebox, query), "logits": query, "scores": query, "labels": query}[config.exposure]
    severity = _level(achievable / max(clean, 1e-12), high=0.5, medium=0.8)
    if config.exposure == "labels" and severity != "low":
        severity = SEVERITIES[SEVERITIES.index(severity) - 1]  # score-based attacks need more than labels
    leak = math.nan
    if config.exposure == "gradients":
        severity = "high"  # training gradients also leak the data itself (chapter 9)
        leak = _gradient_leak(model, data)
    summary = (
        f"The API returns {config.exposure}. A query-only attacker ({config.queries} queries, no gradients) "
        f"leaves {query:.0%} accuracy, a white-box PGD attacker {whitebox:.0%}, from {clean:.0%} clean."
    )
    if query + 0.03 < whitebox:
        summary += " The query-only attacker does better than the white-box one: hiding gradients is no protection."
    if config.exposure == "gradients":
        summary += f" From one training example's gradient, DLG rebuilds the input with mean squared error {leak:.2g}."
    recommendation = {
        "gradients": "Never return gradients (or per-example updates) to callers; if training must be shared, "
        "aggregate securely and add DP noise.",
        "logits": "Return labels or rounded top-1 scores only, rate-limit and monitor queries; "
        "assume a query-only attacker reaches the measured robust accuracy.",
        "scores": "Round or drop scores, rate-limit and monitor queries; assume the measured query-only attack.",
        "labels": "Keep returning labels only; still test with transfer and decision-based attacks.",
    }[config.exposure]
    evidence = {
        "exposure": config.exposure,
        "clean_accuracy": clean,
        "whitebox_pgd_accuracy": whitebox,
        "query_only_square_accuracy": query,
        "queries_per_input": config.queries,
        "eps": config.eps,
        "rows": len(y),
    }
    if config.exposure == "gradients":
        evidence["dlg_reconstruction_mse"] = leak
    return Finding("gradient_exposure", severity, summary, evidence, recommendation)


def check_adversarial_testing(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """Robust accuracy against the strongest of FGSM, PGD and Square at every budget, plus DeepFool sizes."""
    from gdsec.attacks import deepfool, perturbation_norm, robust_accuracy
    from gdsec.train import predict

    x, y = _eval_rows(data, config)
    curve: dict[str, float] = {}
    strongest: dict[str, str] = {}
    for eps in config.eps_grid:
        results = {
            "fgsm": robust_accuracy(model, x, y, "fgsm", eps=eps),
            "pgd": robust_accuracy(model, x, y, "pgd", eps=eps, steps=config.pgd_steps, seed=config.seed),
            "square": robust_accuracy(model, x, y, "square", eps=eps, queries=config.queries, seed=config.seed),
        }
        name = min(results, key=results.get)
        curve[f"{eps:g}"], strongest[f"{eps:g}"] = results[name], name
    x_df = deepfool(model, x)
    flipped = predict(model, x_df) != predict(model, x)
    sizes = perturbation_norm(x, x_df, norm="2")[flipped]
    median_l2 = sizes.median().item() if len(sizes) else math.inf
    at_eps = curve.get(f"{config.eps:g}", min(curve.values()))
    severity = _level(at_eps, high=0.5, medium=0.75)
    summary = (
        f"Worst-case robust accuracy {at_eps:.0%} at L-inf eps = {config.eps:g} "
        f"(strongest attack: {strongest.get(f'{config.eps:g}', 'n/a')}); the median DeepFool "
        f"perturbation that flips a prediction has L2 size {median_l2:.2f}."
    )
    recommendation = (
        "Adversarially train (PGD, Madry-style) at the deployment budget and re-test with every attack; "
        "report the worst case, never the attack that looks best."
        if severity != "low"
        else "Keep the robust accuracy curve in the release checklist and re-run it on every retraining."
    )
    evidence = {
        "robust_accuracy_by_eps": curve,
        "strongest_attack_by_eps": strongest,
        "deepfool_median_l2": median_l2,
        "rows": len(y),
    }
    return Finding("adversarial_testing", severity, summary, evidence, recommendation)


def reference_model(data: Split, *, epochs: int = 40, seed: int = 0) -> nn.Module:
    """A small MLP the auditor trains on the trusted held-out split, to judge the training labels."""
    from gdsec.models import mlp
    from gdsec.train import train

    x, y = data.x_test, data.y_test
    n_classes = int(max(data.y_train.max().item(), y.max().item())) + 1
    model = mlp(n_features=int(x[0].numel()), n_classes=n_classes, seed=seed)
    train(model, x, y, optimizer="adam", lr=0.01, epochs=epochs, batch_size=min(64, len(y)), seed=seed, progress=False)
    return model


def reconstruct_trigger(
    x: torch.Tensor, y: torch.Tensor, flagged: torch.Tensor, target: int, *, pixels: int = 4
) -> torch.Tensor:
    """Flat indices of the ``pixels`` features that flagged rows labelled ``target`` share and others lack.

    Backdoored rows are inputs of other classes carrying one common pattern, so the mean of the
    flagged ``target`` rows minus the mean of every row of another class singles the pattern out.
    """
    check_int("pixels", pixels, low=1, high=int(x[0].numel()))
    check_labels("y", y, n=x.shape[0])
    rows = flagged[y[flagged] == target]
    if len(rows) == 0 or not (y != target).any():
        raise ValueError(f"flagged must contain rows labelled {target}, and y rows of other classes")
    difference = (x[rows].mean(0) - x[y != target].mean(0)).flatten()
    return torch.topk(difference, pixels).indices.sort().values


def stamp(x: torch.Tensor, pixels: torch.Tensor, *, value: float = 1.0) -> torch.Tensor:
    """A copy of ``x`` with the given flat feature indices set to ``value`` (a candidate trigger)."""
    check_fraction("value", value)
    out = x.detach().clone().flatten(1)
    out[:, pixels] = value
    return out.reshape(x.shape)


def check_training_security(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """Scan the training data for poison (gdsec.poisoning.detect_poison), then test a rebuilt trigger."""
    from gdsec.poisoning import detect_poison
    from gdsec.train import predict

    x, y = data.x_train, data.y_train
    if config.poison_method == "loss":
        judge = config.reference if config.reference is not None else reference_model(data, seed=config.seed)
    else:
        judge = model
    detection = detect_poison(judge, x, y, method=config.poison_method, expected_fraction=config.expected_fraction)
    flagged = detection.flagged
    counts = torch.bincount(y[flagged], minlength=int(y.max()) + 1)
    suspect = int(counts.argmax())
    share = counts[suspect].item() / max(len(flagged), 1)
    x_other, y_other = data.x_test[data.y_test != suspect], data.y_test[data.y_test != suspect]
    best = (0.0, suspect, torch.empty(0, dtype=torch.long))
    for target in counts.nonzero().flatten().tolist():
        if counts[target] < 3:
            continue
        pixels = reconstruct_trigger(x, y, flagged, target, pixels=config.trigger_pixels)
        others = data.x_test[data.y_test != target]
        rate = (predict(model, stamp(others, pixels)) == target).float().mean().item()
        if rate > best[0]:
            best = (rate, target, pixels)
    rate, target, pixels = best
    baseline = (predict(model, x_other) == suspect).float().mean().item() if len(y_other) else 0.0
    severity = "high" if rate >= 0.5 else "medium" if rate >= 0.25 or share >= 0.5 else "low"
    summary = (
        f"The scan flags {len(flagged)} of {len(y)} training rows, {share:.0%} of them labelled {suspect}. "
        f"A trigger rebuilt from the flagged rows sends {rate:.0%} of held-out inputs of other classes to class {target}."
    )
    recommendation = (
        "Treat the model as backdoored: quarantine the flagged rows, trace their provenance, retrain from "
        "trusted data and re-run this scan."
        if severity == "high"
        else "Inspect the flagged rows by hand and keep provenance for every training row."
        if severity == "medium"
        else "No sign of a backdoor in this scan; keep data provenance and re-scan whenever new data arrives."
    )
    evidence = {
        "method": config.poison_method,
        "flagged_rows": len(flagged),
        "suspected_class": suspect,
        "share_of_flagged_in_class": share,
        "trigger_class": target,
        "trigger_features": pixels.tolist(),
        "trigger_success": rate,
        "untriggered_rate_to_class": baseline,
        "flagged_index": flagged.tolist(),
    }
    return Finding("training_security", severity, summary, evidence, recommendation)


def check_robustness_verification(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """The masking sanity checks of gdsec.masking: do weaker attacks ever beat stronger ones?"""
    from gdsec.masking import sanity_checks

    x, y = _eval_rows(data, config)
    report = sanity_checks(
        model, x, y, eps=config.eps, surrogate=config.surrogate, steps=config.pgd_steps,
        queries=config.queries, seed=config.seed,
    )
    failed = [name for name, passed in report.checks.items() if not passed]
    severity = "high" if report.masked else "low"
    summary = (
        f"{len(report.checks) - len(failed)} of {len(report.checks)} sanity checks pass"
        + (f"; failed: {', '.join(failed)}. The robustness is an artefact of hidden gradients." if failed else ".")
    )
    recommendation = (
        "Do not report white-box robustness for this model: evaluate with BPDA, EOT, transfer and "
        "gradient-free attacks, and remove the masking component."
        if report.masked
        else "Robustness measurements are consistent; keep the sanity checks in every evaluation."
    )
    evidence = {"masked": report.masked, "failed_checks": failed, **{k: float(v) for k, v in report.evidence.items()}}
    return Finding("robustness_verification", severity, summary, evidence, recommendation)


def check_convergence_properties(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """Final training loss, gradient norm, sharpness (top Hessian eigenvalue) and generalisation gap."""
    from gdsec.landscape import sharpness
    from gdsec.train import accuracy, loss_gradient

    x, y = data.x_train, data.y_train
    with eval_mode(model), torch.no_grad():
        final_loss = nn.functional.cross_entropy(model(x), y).item()
    grad_norm = loss_gradient(model, x, y).norm().item()
    rows = min(config.sharpness_rows, len(y))
    top_eigenvalue = sharpness(model, x[:rows], y[:rows], iters=20, seed=config.seed)
    train_acc, test_acc = accuracy(model, x, y), accuracy(model, data.x_test, data.y_test)
    gap = train_acc - test_acc
    problems = []
    if not math.isfinite(final_loss) or not math.isfinite(grad_norm):
        problems.append("non-finite loss or gradient")
    if grad_norm > config.gradient_tol:
        problems.append(f"gradient norm {grad_norm:.3g} above {config.gradient_tol:g}")
    if gap > config.generalisation_gap:
        problems.append(f"train-test gap {gap:.0%}")
    severity = "high" if problems and problems[0].startswith("non-finite") else "medium" if problems else "low"
    summary = (
        f"Final training loss {final_loss:.3g}, gradient norm {grad_norm:.3g}, sharpness {top_eigenvalue:.3g}; "
        f"train/test accuracy {train_acc:.0%}/{test_acc:.0%}."
        + (f" Concerns: {'; '.join(problems)}." if problems else "")
    )
    recommendation = (
        "Check that training converged to an ordinary minimum: loss curves, gradient norm, sharpness "
        "against a clean retraining, and the data that shaped it."
        if problems
        else "Record these values as the model's baseline; a retraining that moves them far needs an explanation."
    )
    evidence = {
        "final_loss": final_loss,
        "gradient_norm": grad_norm,
        "sharpness": top_eigenvalue,
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
    }
    return Finding("convergence_properties", severity, summary, evidence, recommendation)


DEFAULT_CHECKS: dict[str, Check] = {
    "gradient_exposure": check_gradient_exposure,
    "adversarial_testing": check_adversarial_testing,
    "training_security": check_training_security,
    "robustness_verification": check_robustness_verification,
    "convergence_properties": check_convergence_properties,
}


def _check_data(data: object, n_classes: int | None = None) -> Split:
    if not isinstance(data, Split):
        raise ValueError("data must be a gdsec.data.Split (x_train, y_train: the training data; x_test, y_test: trusted held-out data)")
    for part in ("train", "test"):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] < 2:
            raise ValueError(f"data.x_{part} must be a floating-point tensor of at least two rows")
        if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError(f"data.x_{part} must be finite with values in [0, 1]")
        check_labels(f"data.y_{part}", y, n=x.shape[0], n_classes=n_classes)
    return data


def audit(
    model: nn.Module,
    data: Split,
    *,
    name: str = "model",
    exposure: str = "logits",
    eps: float = 0.1,
    eps_grid: Sequence[float] = (0.05, 0.1, 0.2, 0.3),
    n_eval: int = 200,
    pgd_steps: int = 20,
    queries: int = 300,
    expected_fraction: float = 0.05,
    poison_method: str = "loss",
    reference: nn.Module | None = None,
    surrogate: nn.Module | None = None,
    seed: int = 0,
    checks: Mapping[str, Check] | None = None,
    **thresholds: float,
) -> AuditReport:
    """Audit ``model`` against the five questions of ``QUESTIONS``; return an :class:`AuditReport`.

    ``data.x_train, data.y_train`` is the training data to scan; ``data.x_test, data.y_test`` is a
    trusted held-out sample the auditor controls (attacks are measured on its first ``n_eval``
    rows). ``exposure`` is what the deployed model returns (one of ``EXPOSURES``); ``eps`` the
    L-infinity budget of the threat model. ``checks`` replaces individual checks by key (each a
    callable ``(model, data, config) -> Finding``); ``thresholds`` overrides ``AuditConfig`` fields
    such as ``gradient_tol``. Neither the model nor the data is modified.
    """
    check_model("model", model)
    _check_data(data)
    check_choice("exposure", exposure, EXPOSURES)
    check_number("eps", eps, low=0.0, high=1.0, low_open=True)
    grid = tuple(check_number("eps_grid", e, low=0.0, high=1.0, low_open=True) for e in eps_grid)
    if not grid:
        raise ValueError("eps_grid must list at least one budget in (0, 1]")
    check_int("n_eval", n_eval, low=1)
    check_int("pgd_steps", pgd_steps, low=1)
    check_int("queries", queries, low=1)
    check_number("expected_fraction", expected_fraction, low=0.0, high=1.0, low_open=True)
    check_choice("poison_method", poison_method, ("loss", "spectral"))
    for label, other in (("reference", reference), ("surrogate", surrogate)):
        if other is not None:
            check_model(label, other)
    check_int("seed", seed, low=0)
    known = {"trigger_pixels", "sharpness_rows", "gradient_tol", "generalisation_gap"}
    unknown = set(thresholds) - known
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; allowed: {sorted(known)}")
    config = replace(
        AuditConfig(), exposure=exposure, eps=eps, eps_grid=grid, n_eval=n_eval, pgd_steps=pgd_steps,
        queries=queries, expected_fraction=expected_fraction, poison_method=poison_method,
        reference=reference, surrogate=surrogate, seed=seed, **thresholds,
    )
    chosen = dict(DEFAULT_CHECKS)
    for key, fn in (checks or {}).items():
        check_choice("checks", key, tuple(QUESTIONS))
        if not callable(fn):
            raise ValueError(f"checks[{key!r}] must be a callable (model, data, config) -> Finding")
        chosen[key] = fn
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    findings = []
    with eval_mode(model):
        for key in QUESTIONS:
            finding = chosen[key](model, data, config)
            if not isinstance(finding, Finding) or finding.question != key or finding.severity not in SEVERITIES:
                raise ValueError(f"checks[{key!r}] must return a Finding for {key!r} with a severity in {SEVERITIES}")
            findings.append(finding)
    if any(not torch.equal(v, state[k]) for k, v in model.state_dict().items()):
        raise RuntimeError("an audit check modified the model's parameters")
    return AuditReport(str(name), tuple(findings), config.public())
