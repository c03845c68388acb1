"""The ``gdsec-audit`` command (also ``python -m gdsec.audit``): audit a saved model on an ``.npz``.

It loads a TorchScript file or a ``torch.export`` program, checks the data and the model's output
before any check runs, runs :func:`gdsec.audit.audit`, writes the report to stdout or atomically to
``--out``, and exits 0 (pass), 1 (a finding reaches ``--fail-on``), 2 (bad input) or 3 (the audit failed).
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import torch
from torch import nn

from gdsec import __version__
from gdsec.attacks import BUDGETS
from gdsec.audit import AuditConfig, AuditReport, audit
from gdsec.audit.loading import KINDS, load_data, load_model, model_classes, one_line
from gdsec.data import Split

__all__ = ["main"]

_EPILOG = """\
MODEL  in eval mode, mapping a float32 batch shaped like the DATA inputs to logits (N, C), saved
       with torch.jit.save(torch.jit.script(model), "model.pt") or torch.export.save(torch.export.
       export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)), "model.pt2").
DATA   np.savez("data.npz", x_train=..., y_train=..., x_test=..., y_test=...): training data to scan
       and trusted held-out data to attack; inputs (N, ...) in [0, 1], integer labels in [0, C).
budget quick: only --eps, 64 evaluation rows, gdsec.attacks.BUDGETS["quick"] (smoke tests);
       standard: the AuditConfig defaults (BUDGETS["standard"]) with --eps added to the grid (releases).
exit   0 no finding reaches --fail-on; 1 one does; 2 bad input (one line on stderr, nothing
       written); 3 the audit itself failed.
trust  DATA is read with allow_pickle=False, but torch.jit.load and torch.export.load unpickle
       parts of MODEL and its code runs during the audit: audit only model files you trust.
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises its errors (one line) instead of printing the usage."""

    def error(self, message: str) -> NoReturn:
        """Raise ``message`` as a usage error."""
        raise argparse.ArgumentError(None, message)


def _parser() -> _Parser:
    """The command's arguments."""
    parser = _Parser(
        prog="gdsec-audit",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Audit a saved model against the five gradient-security questions of chapter 10.",
    )
    parser.add_argument(
        "model", type=Path, metavar="MODEL", help="TorchScript file or torch.export program (.pt2)"
    )
    parser.add_argument(
        "data", type=Path, metavar="DATA", help=".npz with x_train, y_train, x_test, y_test"
    )
    parser.add_argument(
        "--eps", type=float, default=0.1, help="L-inf attack budget in (0, 1] (default 0.1)"
    )
    parser.add_argument(
        "--exposure",
        default="logits",
        help="what the model returns: labels, scores, logits or gradients",
    )
    parser.add_argument(
        "--format", choices=("md", "json", "html"), default="md", help="report format (default md)"
    )
    parser.add_argument("--out", type=Path, help="write the report to this file (default: stdout)")
    parser.add_argument(
        "--fail-on",
        choices=("high", "medium", "never"),
        default="high",
        help="exit 1 when a finding reaches this severity (default high)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every randomised check (default 0)"
    )
    parser.add_argument(
        "--budget",
        choices=("quick", "standard"),
        default="standard",
        help="attack budgets: quick for smoke tests, standard for a release (default standard)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s (gdsec {__version__})")
    return parser


def _config(args: argparse.Namespace) -> AuditConfig:
    """The audit settings from the arguments: threat model, then the budget's attack budgets."""
    config = AuditConfig(
        eps=args.eps, exposure=args.exposure, seed=args.seed, budget=BUDGETS[args.budget]
    )
    if args.budget == "quick":
        return dataclasses.replace(
            config, eps_grid=(config.eps,), n_eval=64, n_references=1, sharpness_rows=128
        )
    return dataclasses.replace(config, eps_grid=tuple(sorted({*config.eps_grid, config.eps})))


def _render(report: AuditReport, fmt: str) -> str:
    """The report as text in format ``fmt`` (md, json or html)."""
    if fmt == "html":
        title = html.escape(f"Audit of {report.name}")
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body>\n{report.to_html()}\n</body></html>\n"
        )
    return report.to_json() + "\n" if fmt == "json" else report.to_markdown()


def _write(text: str, out: Path | None) -> None:
    """Write ``text`` to stdout, or to ``out`` through a temporary file renamed only once complete."""
    if out is None:
        sys.stdout.write(text)
        return
    with tempfile.NamedTemporaryFile(
        "w", dir=out.parent, prefix=f".{out.name}.", delete=False
    ) as stream:
        temporary = Path(stream.name)
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.chmod(0o644)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)  # a no-op once renamed


def _failing(report: AuditReport, fail_on: str) -> list[str]:
    """The questions whose severity reaches ``fail_on`` (an unknown severity always counts)."""
    rank = {name: i for i, name in enumerate(("low", "medium", "high", "never"))}
    return [
        f.question for f in report.findings if rank.get(f.severity, rank["high"]) >= rank[fail_on]
    ]


def _say(message: str) -> None:
    """One progress or error line on stderr."""
    print(f"gdsec-audit: {message}", file=sys.stderr, flush=True)


def _prepare(args: argparse.Namespace) -> tuple[AuditConfig, nn.Module, Split]:
    """Validated settings, model and data (progress printed only once all are valid); ``ValueError`` otherwise."""
    config, out = _config(args), args.out
    if out is not None and (
        out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK)
    ):
        raise ValueError(f"--out {out}: not a writable file path")
    if (
        out is not None
        and out.exists()
        and any(p.exists() and out.samefile(p) for p in (args.model, args.data))
    ):
        raise ValueError(f"--out {out}: would overwrite an input file")
    data, model = load_data(args.data), load_model(args.model)
    classes = model_classes(model, data)
    _say(
        f"data: {len(data.y_train)} training rows, {len(data.y_test)} held-out rows shaped "
        f"{tuple(data.x_test.shape[1:])}"
    )
    kind = "export" if isinstance(model, torch.fx.GraphModule) else "torchscript"
    _say(
        f"model: {KINDS[kind]}, {sum(p.numel() for p in model.parameters()):,} parameters, {classes} classes"
    )
    return config, model, data


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gdsec-audit`` with ``argv`` (default: the command line); return the exit status.

    Taught in chapter 10.
    """
    try:
        args = _parser().parse_args(argv)
        config, model, data = _prepare(args)
        _say(
            f"auditing at eps = {config.eps:g}, exposure {config.exposure}, budget {args.budget}, seed {config.seed}"
        )
        start = time.perf_counter()
        report = audit(model, data, config=config, name=args.model.name)
        for finding in report.findings:
            _say(f"  {finding.question}: {finding.severity}")
        _write(_render(report, args.format), args.out)
    except SystemExit as done:  # --help and --version
        return int(done.code or 0)
    except argparse.ArgumentError as error:
        _say(f"error: {error} (see gdsec-audit --help)")
        return 2
    except (ValueError, OSError) as error:  # bad input, or an --out that cannot be written
        _say(f"error: {' '.join(str(error).split())}")
        return 2
    except Exception as error:  # a bug, or a model the checks cannot handle: one line, status 3
        _say(f"error: the audit failed ({one_line(error)})")
        return 3
    failing = _failing(report, args.fail_on)
    verdict = (
        f"FAIL, reaching --fail-on {args.fail_on}: {', '.join(failing)}" if failing else "pass"
    )
    _say(
        f"done in {time.perf_counter() - start:.1f} s; {verdict}"
        + (f"; report in {args.out}" if args.out else "")
    )
    return 1 if failing else 0
