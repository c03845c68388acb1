"""How often is the audit right? Audit a zoo of models whose truth is known; print a scorecard.

The zoo (``bench/zoo_models.py``) holds, on the digits and on a tabular set (scikit-learn's breast
cancer table), honest models over seeds and architectures, backdoors (patch, dark, blended, warping
and extreme-feature triggers), label flips, masking (quantised, randomised, off-grid saturation,
decoy gradient), an adversarially trained model, logit-rescaled copies (x1000) and under-trained
models. Each is audited with ``gdsec.audit.audit`` (references trained once per dataset on the
trusted split) and judged question by question:

* gradient_exposure (exposure "logits"): truth from a Square attack the bench runs with 1,000
  queries on the model's decisions (on the mean of repeated answers for a randomised model):
  robust/clean accuracy below 0.5 -> True (hit: "high"), at or above 0.8 -> False (false alarm:
  "medium" or worse), in between not judged;
* adversarial_testing: truth from the full ``gdsec.attacks.evaluate`` ensemble (100 APGD steps) on
  the model itself, on its BPDA stand-in (quantised, randomised) or on the honest model whose
  decisions it returns (rescaled, saturated, decoy): below 50 % -> True (hit: "high" AND a reported
  robust accuracy at most 5 points above the truth), at or above 75 % -> False (false alarm:
  "medium" or worse), in between not judged;
* training_security: poisoned training data -> True, clean -> False (hit and false alarm at
  "medium" or worse);
* robustness_verification: a layer that hides the gradient of the normalised logits (quantised,
  randomised, decoy) -> True, none -> False ("medium" or worse); the off-grid saturation (a per-row
  logit scale the audit's normalisation removes) is not judged here;
* convergence_properties: under-trained (1 epoch) -> True, honest and rescaled -> False ("medium"
  or worse); the other kinds are not judged.

A rescaled copy should get exactly its original's severities: that agreement is its own row.
Rates carry Wilson 95 % intervals (``gdsec.seeds.wilson_interval``). Seeds 100 and up.

    python bench/audit_zoo.py [--seeds 3] [--dataset all] [--budget zoo] [--kinds a,b] [--n-eval 200]
        [--json OUT] [--out MD]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import zoo_models
from zoo_models import KINDS, LOADERS, ZooModel, judge, measure_truth

from gdsec import audit
from gdsec.attacks import BUDGETS, Budget
from gdsec.audit.report import SEVERITIES
from gdsec.seeds import wilson_interval

#: The audit's default budget here: between "quick" (a smoke test) and "standard" (AutoAttack's).
ZOO_BUDGET = Budget(steps=20, fab_steps=20, square_steps=300, draws=8, check_rows=32)
#: Per question: the severity that counts as a hit on a True model, and as a false alarm on a False one.
RULES = {
    "gradient_exposure": ("high", "medium"),
    "adversarial_testing": ("high", "medium"),
    "training_security": ("medium", "medium"),
    "robustness_verification": ("medium", "medium"),
    "convergence_properties": ("medium", "medium"),
}
INFLATION = 0.05  # a reported robust accuracy this far above the truth is a miss
FIRST_SEED = 100


def at_least(severity: str, level: str) -> bool:
    """Whether ``severity`` is ``level`` or worse."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(level)


def outcome(question: str, severity: str, truth: bool | None, inflated: bool) -> str:
    """ "hit", "miss", "alarm" (false alarm), "ok" (correctly quiet) or "-" (not judged)."""
    if truth is None:
        return "-"
    hit_level, alarm_level = RULES[question]
    if truth:
        missed = not at_least(severity, hit_level) or (
            question == "adversarial_testing" and inflated
        )
        return "miss" if missed else "hit"
    return "alarm" if at_least(severity, alarm_level) else "ok"


def _rate(k: int, n: int) -> str:
    """ "k/n (rate, lo-hi)" with the Wilson 95 % interval, or "not judged"."""
    if n == 0:
        return "not judged (no model)"
    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} ({k / n:.0%}, {lo:.0%}-{hi:.0%})"


def scorecard(rows: list[dict]) -> tuple[list[dict], str]:
    """Per question: hits over the True models and false alarms over the False ones; Markdown."""
    table, lines = [], []
    lines += [
        "| question | hit if | hits / n (rate, 95 % CI) | false alarm if | false alarms / n (rate, 95 % CI) | bar |",
        "|---|---|---|---|---|---|",
    ]
    for question, (hit_level, alarm_level) in RULES.items():
        marks = [r["outcome"][question] for r in rows]
        hits, misses = marks.count("hit"), marks.count("miss")
        alarms, quiet = marks.count("alarm"), marks.count("ok")
        n_true, n_false = hits + misses, alarms + quiet
        below = (n_true and hits / n_true < 0.9) or (n_false and alarms / n_false > 0.1)
        table.append(
            {
                "question": question,
                "hits": hits,
                "n_true": n_true,
                "alarms": alarms,
                "n_false": n_false,
                "meets_bar": not below,
            }
        )
        hit_text = "high" + (" and not inflated" if question == "adversarial_testing" else "")
        lines.append(
            f"| {question} | {hit_text if hit_level == 'high' else '>= ' + hit_level} | "
            f"{_rate(hits, n_true)} | >= {alarm_level} | {_rate(alarms, n_false)} | "
            f"{'BELOW BAR' if below else 'meets'} |"
        )
    pairs = [r["agrees_with_original"] for r in rows if r["agrees_with_original"] is not None]
    lines.append(
        f"| rescaled copy x1000 = original's severities | all five equal | "
        f"{_rate(sum(pairs), len(pairs))} | | | {'meets' if all(pairs) else 'BELOW BAR'} |"
    )
    table.append({"question": "rescaled_agreement", "agree": sum(pairs), "n": len(pairs)})
    return table, "\n".join(lines)


def per_model(rows: list[dict]) -> str:
    """The per-model table: severities, truth and outcome per question, true and reported accuracy."""
    head = "| dataset | kind | seed | " + " | ".join(f"Q{i + 1}" for i in range(5))
    lines = [
        head + " | true robust acc | reported | notes | audit s (CPU s) |",
        "|---|---|---|" + "---|" * 5 + "---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r['severities'][q]} {'T' if r['truth'][q] else '-' if r['truth'][q] is None else 'F'}"
            f" {r['outcome'][q] if r['outcome'][q] != '-' else ''}".rstrip()
            for q in RULES
        ]
        notes = ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["notes"].items()
        )
        lines.append(
            f"| {r['dataset']} | {r['kind']} | {r['seed']} | {' | '.join(cells)} | "
            f"{r['true_robust']:.0%} | {r['reported_robust']:.0%} | {notes} | "
            f"{r['seconds']:.1f} ({r['cpu_seconds']:.1f}) |"
        )
    return "\n".join(lines)


def audit_member(member: ZooModel, config: audit.AuditConfig, truths: dict, original: dict) -> dict:
    """Audit one member, measure (or reuse) its truth, judge it: one row of the per-model table.

    ``truths`` holds the truth already measured per attacked model (wrappers share their base's);
    ``original`` the severities of the honest MLP of the same dataset and seed, if audited.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    name = f"{member.dataset}/{member.kind}/{member.seed}"
    report = audit.audit(member.model, member.split, config, name=name)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    key = member.attacked  # the object, kept alive by the dict: an id could be reused
    if key not in truths:
        truths[key] = measure_truth(member, config.n_eval, config.eps)
    truth = judge(member, truths[key])
    severities = dict(report.severities)
    reported = float(report.finding("adversarial_testing").evidence["robust_accuracy"])
    inflated = reported > truths[key]["robust"] + INFLATION
    rescaled = member.kind == "rescaled" and bool(original)
    return {
        "dataset": member.dataset,
        "kind": member.kind,
        "seed": member.seed,
        "severities": severities,
        "truth": truth,
        "outcome": {q: outcome(q, severities[q], truth[q], inflated) for q in RULES},
        "true_robust": truths[key]["robust"],
        "reported_robust": reported,
        "true_query_ratio": truths[key]["query_ratio"],
        "true_clean": truths[key]["clean"],
        "agrees_with_original": (severities == original) if rescaled else None,
        "notes": member.notes,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "findings": json.loads(report.to_json()),
    }


def run(
    datasets: list[str],
    kinds: list[str] | None,
    n_seeds: int,
    config: audit.AuditConfig,
    log=print,
    on_row=lambda rows: None,
) -> list[dict]:
    """Build, audit and judge every member of the zoo, seed by seed; one row per model.

    ``on_row(rows)`` is called after every model (the CLI saves what it has so far).
    """
    rows, start, setups = [], time.perf_counter(), {}
    for dataset in datasets:
        split = LOADERS[dataset]()
        chosen = [k for k in KINDS[dataset] if kinds is None or k in kinds]
        skipped = [k for k in chosen if not zoo_models.available(k)]
        if skipped:
            log(f"[{dataset}] skipping {skipped}: this gdsec lacks what they need")
        references = audit.reference_models(split, n_seeds=config.n_references, seed=FIRST_SEED)
        chosen = [k for k in chosen if k not in skipped]
        setups[dataset] = (split, chosen, audit.configure(config, references=references))
    for seed in range(FIRST_SEED, FIRST_SEED + n_seeds):
        for dataset, (split, chosen, cfg) in setups.items():
            base = zoo_models.train_base(split, seed)
            truths: dict[object, dict[str, float]] = {}
            original: dict[str, str] = {}
            for kind in chosen:
                member = zoo_models.build(kind, dataset, split, seed, base)
                row = audit_member(member, cfg, truths, original)
                original = row["severities"] if kind == "honest_mlp" else original
                rows.append(row)
                on_row(rows)
                log(
                    f"[{time.perf_counter() - start:6.0f} s] {dataset} {kind} seed {seed}: "
                    f"{row['severities']} audit {row['seconds']:.1f} s ({row['cpu_seconds']:.1f} CPU s)"
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the zoo, print the scorecard and the per-model table (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per kind (default 3: 100-102)")
    parser.add_argument("--dataset", choices=["digits", "tabular", "all"], default="all")
    parser.add_argument("--kinds", default=None, help="comma-separated kinds (default: all)")
    parser.add_argument(
        "--budget",
        choices=["quick", "zoo", "standard"],
        default="zoo",
        help="the audit's attack budget (zoo: 20 steps, 300 queries, 8 draws)",
    )
    parser.add_argument(
        "--n-eval", type=int, default=200, help="trusted rows attacked (default 200)"
    )
    parser.add_argument("--json", default=None, metavar="OUT", help="save rows and table as JSON")
    parser.add_argument(
        "--out", default=None, help="also write the Markdown here (after each model)"
    )
    args = parser.parse_args(argv)
    datasets = ["digits", "tabular"] if args.dataset == "all" else [args.dataset]
    kinds = None if args.kinds is None else args.kinds.split(",")
    unknown = set(kinds or ()) - {k for d in datasets for k in KINDS[d]}
    if unknown or args.seeds < 1:
        parser.error(
            f"unknown kinds {sorted(unknown)}" if unknown else "--seeds must be at least 1"
        )
    budget = ZOO_BUDGET if args.budget == "zoo" else BUDGETS[args.budget]
    config = audit.AuditConfig(budget=budget, n_eval=args.n_eval, eps_grid=(0.1,), seed=FIRST_SEED)
    torch.set_num_threads(1)  # one core per process: the numbers are per-core seconds
    start, cpu = time.perf_counter(), time.process_time()
    title = f"{', '.join(datasets)}; {args.seeds} seed(s) per kind; budget {args.budget}, "
    title += f"n_eval {args.n_eval}, eps 0.1"

    def save(rows: list[dict], done: bool = False) -> str:
        """The Markdown so far, written to --out and --json (marked partial until the zoo is done)."""
        table, card = scorecard(rows)
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        text = (
            f"## Audit zoo: {len(rows)} models ({title}){'' if done else ' PARTIAL'}\n\n"
            f"{card}\n\n{per_model(rows)}\n\n"
            f"Zoo time {wall:.0f} s wall, {used:.0f} CPU s (one thread).\n"
        )
        if args.out:
            with open(args.out, "w") as out:
                out.write(text)
        if args.json:
            with open(args.json, "w") as out:
                record = {"table": table, "rows": rows, "seconds": wall, "done": done}
                json.dump(record, out, indent=1, default=str)
        return text

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    rows = run(datasets, kinds, args.seeds, config, log=log, on_row=save)
    print(save(rows, done=True))


if __name__ == "__main__":
    main()
