"""The ``gdsec-audit`` command (also ``python -m gdsec.audit``): audit a saved model on an ``.npz``.

It loads a TorchScript file or a ``torch.export`` program, checks every input and output path before
any check runs, runs :func:`gdsec.audit.audit` with a progress line per question, rewrites the
report atomically to ``--out`` after each question (marked incomplete until done), and exits with
the status of the epilog's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from gdsec import __version__
from gdsec.audit import QUESTIONS, AuditConfig, AuditReport, Finding, audit, ci
from gdsec.audit.loading import (
    KINDS,
    check_classes,
    check_device,
    load_data,
    load_model,
    model_classes,
    model_device,
    on_device,
    one_line,
)
from gdsec.audit.options import audit_config, chosen_questions, parser
from gdsec.audit.progress import Progress, TimeUp
from gdsec.audit.wrapping import prepare_model
from gdsec.data import Split

__all__ = ["main"]


def _check_out(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` unless ``--out`` can be written without overwriting an input."""
    out = args.out
    if out is None:
        return
    if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise ValueError(f"--out {out}: not a writable file path")
    inputs = [p for p in (args.model, args.data) if p.exists()]
    if out.exists() and any(out.samefile(p) for p in inputs):
        raise ValueError(f"--out {out}: would overwrite an input file")
    try:
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}."):
            pass  # created and removed: the folder takes a file
    except OSError as error:
        raise ValueError(f"--out {out}: not a writable file path ({error.strerror})") from None


def _render(report: AuditReport, fmt: str, fail_on: str) -> str:
    """The report as text in format ``fmt`` (md, json, html or junit)."""
    if fmt == "html":
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Audit of '
            f"{html.escape(report.name)}</title></head>"
            f"<body>\n{report.to_html()}\n</body></html>\n"
        )
    if fmt == "junit":
        return ci.junit_xml(report, fail_on)
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


def _say(message: str) -> None:
    """One progress or error line on stderr."""
    print(f"gdsec-audit: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class _Job:
    """Everything checked before the audit starts."""

    config: AuditConfig
    model: torch.nn.Module
    data: Split
    questions: tuple[str, ...]
    record: dict[str, object]
    baseline: dict[str, object] | None


def _prepare(args: argparse.Namespace, say: Callable[[str], None]) -> _Job:
    """Validated settings, model, data and output paths (progress printed once all are valid)."""
    config, questions = audit_config(args), chosen_questions(args)
    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError(
            f"--time-limit must be a positive number of seconds, got {args.time_limit}"
        )
    asked = check_device(args.device)
    _check_out(args)
    baseline = None if args.baseline is None else ci.read_baseline(args.baseline)
    data, model = load_data(args.data), load_model(args.model)
    device = asked or model_device(model)
    model, data = on_device(model, data, device)
    classes = model_classes(model, data)
    check_classes(data)
    kind = "export" if isinstance(model, torch.fx.GraphModule) else "torchscript"
    parameters = sum(p.numel() for p in model.parameters())
    model, notes = prepare_model(model, data, args.mean, args.std)
    say(
        f"data: {len(data.y_train)} training rows, {len(data.y_test)} held-out rows "
        f"shaped {tuple(data.x_test.shape[1:])}"
    )
    say(f"model: {KINDS[kind]}, {parameters:,} parameters, {classes} classes, on {device}")
    for note in notes:
        say(f"note: {note}")
    files = {"model": args.model, "data": args.data}
    record = {
        "inputs": {k: {"path": str(p), "sha256": ci.sha256(p)} for k, p in files.items()},
        "versions": {
            "gdsec": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    record["inputs"]["model"] |= {
        "kind": kind,
        "classes": classes,
        "notes": notes,
        "device": str(device),
    }
    return _Job(config, model, data, questions, record, baseline)


def _report(
    job: _Job, args: argparse.Namespace, findings: list[Finding], stopped: str | None, done: bool
) -> AuditReport:
    """The report of the findings so far, with its verdict and exit status once ``done``."""
    answered = [f.question for f in findings]
    not_run = {q: "not selected (--only/--skip)" for q in QUESTIONS if q not in job.questions}
    not_run |= {q: f"not run: {stopped}" for q in job.questions if q not in answered and stopped}
    partial = AuditReport(args.model.name, tuple(findings), job.config.public())
    failing = ci.failing(partial.findings, args.fail_on)
    worse = ci.regressions(partial, job.baseline) if job.baseline is not None and done else []
    status = 4 if stopped else 1 if failing or worse else 0
    result = "incomplete" if stopped or not done else "fail" if status else "pass"
    verdict = {
        "result": result,
        "worst": partial.worst,
        "fail_on": args.fail_on,
        "failing": failing,
        "regressions": worse,
    }
    run = {
        "verdict": verdict,
        "exit_status": status if done else None,
        "incomplete": bool(stopped) or not done,
        "completed_questions": answered,
        "not_run": not_run,
        **job.record,
    }
    return dataclasses.replace(partial, run=run)


def _audit(job: _Job, args: argparse.Namespace, say: Callable[[str], None]) -> AuditReport:
    """Run the audit, rewriting ``--out`` after each question; the final report."""
    findings: list[Finding] = []

    def keep(finding: Finding) -> None:
        findings.append(finding)
        if args.out is not None and len(findings) < len(job.questions):
            _write(
                _render(_report(job, args, findings, None, False), args.format, args.fail_on),
                args.out,
            )

    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
    progress = Progress(job.questions, say, keep, deadline)
    try:
        audit(
            job.model,
            job.data,
            config=job.config,
            name=args.model.name,
            questions=job.questions,
            progress=progress,
        )
        stopped = None
    except TimeUp as up:
        stopped = f"--time-limit {args.time_limit:g} s reached before {up.stage}"
        say(f"stopped: {stopped}")
    except ValueError as error:  # every input was checked before: a check's own bug (exit 3)
        raise RuntimeError(one_line(error)) from None
    return _report(job, args, findings, stopped, True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gdsec-audit`` with ``argv`` (default: the command line); return the exit status.

    Taught in chapter 10.
    """
    try:
        args = parser().parse_args(argv)
        say = (lambda message: None) if args.quiet else _say
        start = time.perf_counter()
        job = _prepare(args, say)
        say(
            f"auditing at eps = {job.config.eps:g}, exposure {job.config.exposure}, "
            f"budget {args.budget}, seed {job.config.seed}"
        )
        report = _audit(job, args, say)
        _write(_render(report, args.format, args.fail_on), args.out)
    except SystemExit as done:  # --help and --version
        return int(done.code or 0)
    except argparse.ArgumentError as error:
        _say(f"error: {error} (see gdsec-audit --help)")
        return 2
    except (ValueError, OSError) as error:  # bad input, or an --out that cannot be written
        _say(f"error: {' '.join(str(error).split())}")
        return 2
    except Exception as error:  # a bug in the audit: one line, status 3
        _say(f"error: the audit failed ({one_line(error)})")
        return 3
    verdict = report.run["verdict"]
    text = {"pass": "pass", "incomplete": "INCOMPLETE"}.get(verdict["result"], "FAIL")
    if verdict["failing"]:
        text += f", reaching --fail-on {args.fail_on}: {', '.join(verdict['failing'])}"
    if verdict["regressions"]:
        text += f", worse than --baseline: {'; '.join(verdict['regressions'])}"
    say(
        f"done in {time.perf_counter() - start:.1f} s; {text}"
        + (f"; report in {args.out}" if args.out else "")
    )
    return int(report.run["exit_status"])
