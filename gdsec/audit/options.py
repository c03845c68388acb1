"""The options of ``gdsec-audit``: its argument parser, and the audit settings and questions they ask for.

``--norm`` accepts ``inf`` only for now: no audit question attacks in L2 (:class:`AuditConfig` has
no norm), so ``--norm 2`` is refused with exit 2 rather than answered in the wrong threat model.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import NoReturn

from gdsec import __version__
from gdsec.attacks import BUDGETS
from gdsec.audit.config import AuditConfig
from gdsec.audit.loading import MIN_ROWS_PER_CLASS
from gdsec.audit.report import QUESTIONS

__all__ = ["EPILOG", "Parser", "audit_config", "chosen_questions", "parser"]

EPILOG = f"""\
MODEL  in eval mode, mapping a float32 batch shaped like the DATA inputs to logits (N, C), saved
       with torch.jit.save(torch.jit.script(model), "model.pt") or torch.export.save(torch.export.
       export(model, (x,), dynamic_shapes=({{0: torch.export.Dim("batch")}},)), "model.pt2").
       A model expecting normalised inputs takes --mean/--std (per channel, axis 1 of x).
DATA   np.savez("data.npz", x_train=..., y_train=..., x_test=..., y_test=...): training data to scan
       and trusted held-out data to attack; inputs (N, ...) in [0, 1], integer labels in [0, C),
       two classes or more, every training class at least {MIN_ROWS_PER_CLASS} times in y_test.
budget quick: only --eps, 64 evaluation rows, gdsec.attacks.BUDGETS["quick"] (smoke tests);
       standard: the AuditConfig defaults (BUDGETS["standard"]) with --eps added to the grid (releases).
exit   0 no finding reaches --fail-on (and nothing got worse than --baseline); 1 one does (or
       something got worse); 2 bad input (one line on stderr, nothing written); 3 the audit itself
       failed (a bug); 4 stopped by --time-limit (the report is marked incomplete).
trust  DATA is read with allow_pickle=False, but torch.jit.load and torch.export.load unpickle
       parts of MODEL and its code runs during the audit: audit only model files you trust.
"""


class Parser(argparse.ArgumentParser):
    """An argument parser that raises its errors (one line) instead of printing the usage.

    Used in chapter 10.
    """

    def error(self, message: str) -> NoReturn:
        """Raise ``message`` as a usage error."""
        raise argparse.ArgumentError(None, message)


def parser() -> Parser:
    """The command's arguments. Used in chapter 10."""
    parser = Parser(
        prog="gdsec-audit",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Audit a saved model against the five gradient-security questions of chapter 10.",
    )
    add = parser.add_argument
    add("model", type=Path, metavar="MODEL", help="TorchScript file or torch.export program (.pt2)")
    add("data", type=Path, metavar="DATA", help=".npz with x_train, y_train, x_test, y_test")
    add("--eps", type=float, default=0.1, help="attack budget in (0, 1], pixel units (default 0.1)")
    add(
        "--norm",
        choices=("inf", "2"),
        default="inf",
        help="threat model: inf (default); 2 exits 2 until the questions attack in L2",
    )
    add(
        "--exposure",
        default="logits",
        help="what the model returns: labels, scores, logits or gradients",
    )
    add("--mean", type=float, nargs="+", metavar="M", help="per-channel mean the MODEL subtracts")
    add("--std", type=float, nargs="+", metavar="S", help="per-channel std the MODEL divides by")
    add(
        "--format",
        choices=("md", "json", "html", "junit"),
        default="md",
        help="report format (default md)",
    )
    add("--out", type=Path, help="write the report to this file (default: stdout)")
    add(
        "--fail-on",
        choices=("high", "medium", "never"),
        default="high",
        help="exit 1 when a finding reaches this severity (default high)",
    )
    add(
        "--baseline",
        type=Path,
        metavar="OLD.json",
        help="exit 1 when a question got worse than this JSON report",
    )
    add(
        "--only",
        action="append",
        choices=tuple(QUESTIONS),
        metavar="QUESTION",
        help="answer only this question (repeatable)",
    )
    add(
        "--skip",
        action="append",
        choices=tuple(QUESTIONS),
        metavar="QUESTION",
        help="do not answer this question (repeatable)",
    )
    add(
        "--n-eval",
        type=int,
        metavar="N",
        help="attack the first N trusted rows (default: budget's)",
    )
    add(
        "--batch-size",
        type=int,
        metavar="N",
        help="attack N trusted rows at a time: memory bounded by N (default: all at once)",
    )
    add(
        "--device",
        default="auto",
        help="run on auto (where the model's parameters are, else cpu), cpu, cuda, cuda:N or mps",
    )
    add("--seed", type=int, default=0, help="seed of every randomised check (default 0)")
    add(
        "--budget",
        choices=("quick", "standard"),
        default="standard",
        help="attack budgets: quick for smoke tests, standard for a release (default standard)",
    )
    add(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop at the first question boundary after SECONDS (exit 4)",
    )
    add("--quiet", action="store_true", help="no progress lines on stderr (errors only)")
    add("--version", action="version", version=f"%(prog)s (gdsec {__version__})")
    return parser


def audit_config(args: argparse.Namespace) -> AuditConfig:
    """The audit settings from the arguments: threat model, then the budget's attack budgets.

    Used in chapter 10.
    """
    if args.norm != "inf":
        raise ValueError(
            f"--norm {args.norm}: the audit questions attack in L-inf only; use --norm inf"
        )
    config = AuditConfig(
        eps=args.eps, exposure=args.exposure, seed=args.seed, budget=BUDGETS[args.budget]
    )
    if args.budget == "quick":
        config = dataclasses.replace(
            config, eps_grid=(config.eps,), n_eval=64, n_references=1, sharpness_rows=128
        )
    else:
        config = dataclasses.replace(config, eps_grid=tuple(sorted({*config.eps_grid, config.eps})))
    if args.n_eval is not None:
        if args.n_eval < 1:
            raise ValueError(f"--n-eval must be a positive number of rows, got {args.n_eval}")
        config = dataclasses.replace(config, n_eval=args.n_eval)
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise ValueError(
                f"--batch-size must be a positive number of rows, got {args.batch_size}"
            )
        config = dataclasses.replace(config, batch_size=args.batch_size)
    return config


def chosen_questions(args: argparse.Namespace) -> tuple[str, ...]:
    """The questions to answer: ``--only`` (default all) less ``--skip``, in audit order.

    Used in chapter 10.
    """
    chosen = tuple(
        q for q in QUESTIONS if q in (args.only or QUESTIONS) and q not in (args.skip or ())
    )
    if not chosen:
        raise ValueError("--only/--skip leave no question to answer")
    return chosen
