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
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from torch import nn

from gdsec import __version__
from gdsec.audit import AuditConfig, AuditReport, audit
from gdsec.data import Split
from gdsec.models import eval_mode

__all__ = ["ARRAYS", "load_data", "load_model", "main"]

#: The arrays DATA must hold.
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_KINDS = {"torchscript": "TorchScript file", "export": "torch.export program"}

_EPILOG = """\
MODEL  in eval mode, mapping a float32 batch shaped like the DATA inputs to logits (N, C), saved
       with torch.jit.save(torch.jit.script(model), "model.pt") or torch.export.save(torch.export.
       export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)), "model.pt2").
DATA   np.savez("data.npz", x_train=..., y_train=..., x_test=..., y_test=...): training data to scan
       and trusted held-out data to attack; inputs (N, ...) in [0, 1], integer labels in [0, C).
budget quick: only --eps, 64 evaluation rows, small attack budgets (smoke tests); standard: the
       AuditConfig defaults with --eps added to the budget grid (releases).
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
    parser = _Parser(prog="gdsec-audit", epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Audit a saved model against the five gradient-security questions of chapter 10.")
    parser.add_argument("model", type=Path, metavar="MODEL", help="TorchScript file or torch.export program (.pt2)")
    parser.add_argument("data", type=Path, metavar="DATA", help=".npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--eps", type=float, default=0.1, help="L-inf attack budget in (0, 1] (default 0.1)")
    parser.add_argument("--exposure", default="logits", help="what the model returns: labels, scores, logits or gradients")
    parser.add_argument("--format", choices=("md", "json", "html"), default="md", help="report format (default md)")
    parser.add_argument("--out", type=Path, help="write the report to this file (default: stdout)")
    parser.add_argument("--fail-on", choices=("high", "medium", "never"), default="high",
                        help="exit 1 when a finding reaches this severity (default high)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every randomised check (default 0)")
    parser.add_argument("--budget", choices=("quick", "standard"), default="standard",
                        help="attack budgets: quick for smoke tests, standard for a release (default standard)")
    parser.add_argument("--version", action="version", version=f"%(prog)s (gdsec {__version__})")
    return parser


def _one_line(error: BaseException) -> str:
    """The first line of ``error``'s message, prefixed with its type."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _check_file(role: str, path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is an existing regular file."""
    if not path.is_file():
        raise ValueError(f"{role} {path}: {'not a regular file' if path.exists() else 'no such file'}")


def _archive_kind(path: Path) -> str:
    """'export' or 'torchscript', read from the zip archive's member names (nothing is unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            tails = {name.split("/", 1)[-1] for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"MODEL {path}: not a TorchScript file or torch.export program ({_one_line(error)})") from None
    if "archive_format" in tails:
        return "export"
    if "constants.pkl" in tails or any(tail.startswith("code/") for tail in tails):
        return "torchscript"
    if "data.pkl" in tails:
        raise ValueError(f"MODEL {path}: a torch.save pickle (not loaded); save the model with torch.jit.save "
                         "or torch.export.save")
    raise ValueError(f"MODEL {path}: a zip archive that is neither TorchScript nor a torch.export program")


def load_model(path: str | os.PathLike) -> nn.Module:
    """The model saved at ``path``: TorchScript (``torch.jit.load``) or a ``torch.export`` program.

    The format is read from the archive; a missing or corrupt file or a pickle raises ``ValueError``.

    Taught in chapter 10.
    """
    path = Path(path)
    _check_file("MODEL", path)
    kind = _archive_kind(path)
    try:
        if kind == "torchscript":
            return torch.jit.load(path, map_location="cpu")
        program = torch.export.load(path).module()
    except Exception as error:  # a corrupt archive fails in many ways inside torch
        raise ValueError(f"MODEL {path}: cannot be loaded as a {_KINDS[kind]} ({_one_line(error)})") from None
    for name in ("train", "eval"):  # module() refuses train()/eval(); export fixed the mode, the flag is harmless
        vars(program).pop(name, None)
    return program


def _read(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """Array ``key`` of the archive, integer or floating point, or ``ValueError`` naming it."""
    try:
        array = archive[key]
    except Exception as error:  # object arrays (pickles) and corrupt members
        raise ValueError(f"DATA {path}: array {key} cannot be read ({_one_line(error)})") from None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"DATA {path}: {key} must hold real numbers, got dtype {array.dtype}")
    return array


def _check_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Raise ``ValueError`` naming the first array with a bad shape, dtype, length or range."""
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim < 2 or x.shape[0] < 2:
            raise ValueError(f"DATA {path}: x_{part} must be a batch (N, ...) of at least 2 rows, got shape {x.shape}")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError(f"DATA {path}: x_{part} has values outside [0, 1] (range [{x.min():.3g}, {x.max():.3g}])")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(f"DATA {path}: y_{part} must be 1-D integer labels, got dtype {y.dtype}, shape {y.shape}")
        if len(y) != len(x):
            raise ValueError(f"DATA {path}: x_{part} has {len(x)} rows but y_{part} has {len(y)} labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(f"DATA {path}: x_train rows are {arrays['x_train'].shape[1:]}, x_test {arrays['x_test'].shape[1:]}")


def load_data(path: str | os.PathLike) -> Split:
    """The ``.npz`` at ``path`` as a Split (float32 inputs in [0, 1], int64 labels), never unpickling.

    A missing or corrupt file or array, a bad shape or dtype, mismatched lengths or values outside
    [0, 1] raise ``ValueError`` naming the problem.
    Taught in chapter 10.
    """
    path = Path(path)
    _check_file("DATA", path)
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # BadZipFile, OSError, ValueError (pickled content)
        raise ValueError(f"DATA {path}: not a readable .npz archive ({_one_line(error)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"DATA {path}: a single .npy array; pack the four arrays with np.savez(path, x_train=..., ...)")
    with archive:
        missing = [key for key in ARRAYS if key not in archive.files]
        if missing:
            raise ValueError(f"DATA {path}: missing array(s) {', '.join(missing)} (needs {', '.join(ARRAYS)})")
        arrays = {key: _read(archive, key, path) for key in ARRAYS}
    _check_arrays(arrays, path)
    return Split(*(
        torch.from_numpy(np.ascontiguousarray(arrays[key], dtype=np.float32 if key[0] == "x" else np.int64))
        for key in ARRAYS
    ))


def _n_classes(model: nn.Module, data: Split) -> int:
    """The number C of logits ``model`` returns, after checking it maps DATA batches to (N, C) logits."""
    x, widths = data.x_test, set()
    for n in (1, min(16, len(x))):
        try:
            with eval_mode(model), torch.no_grad():
                out = model(x[:n])
        except Exception as error:  # the model's own failure, whatever its type
            hint = "; export it with a dynamic batch dimension" if isinstance(model, torch.fx.GraphModule) else ""
            raise ValueError(f"MODEL fails on a batch of {n} DATA input(s) shaped {tuple(x.shape[1:])}: "
                             f"{_one_line(error)}{hint}") from None
        got = f"shape {tuple(out.shape)}, dtype {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() != 2 or out.shape[0] != n:
            raise ValueError(f"MODEL must return a batch of logits (N, C); on {n} input(s) it returned {got}")
        if out.shape[1] < 2 or not torch.isfinite(out).all():
            raise ValueError(f"MODEL must return finite logits for C >= 2 classes, got {got}")
        if n > 1 and (out >= 0).all() and (out <= 1).all() and torch.allclose(out.sum(1), torch.ones(n), atol=1e-4):
            raise ValueError("MODEL returns probabilities (every row sums to 1); save it without its softmax")
        widths.add(out.shape[1])
    n_classes = widths.pop()
    for name, y in (("y_train", data.y_train), ("y_test", data.y_test)):
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"DATA: {name} has labels outside [0, {n_classes}) (the model returns {n_classes} "
                             f"logits): found {int(y.min())} to {int(y.max())}")
    return n_classes


def _config(args: argparse.Namespace) -> AuditConfig:
    """The audit settings from the arguments: threat model, then the budget's attack budgets."""
    config = AuditConfig(eps=args.eps, exposure=args.exposure, seed=args.seed)
    if args.budget == "quick":
        budget = {"eps_grid": (config.eps,), "n_eval": 64, "pgd_steps": 5, "fab_steps": 5, "queries": 50,
                  "eot_samples": 4, "check_rows": 16, "reference_seeds": 1, "sharpness_rows": 128}
    else:
        budget = {"eps_grid": tuple(sorted({*config.eps_grid, config.eps}))}
    known = {f.name for f in dataclasses.fields(AuditConfig)}
    return dataclasses.replace(config, **{k: v for k, v in budget.items() if k in known})


def _render(report: AuditReport, fmt: str) -> str:
    """The report as text in format ``fmt`` (md, json or html)."""
    if fmt == "html":
        title = html.escape(f"Audit of {report.name}")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
                f"<body>\n{report.to_html()}\n</body></html>\n")
    return report.to_json() + "\n" if fmt == "json" else report.to_markdown()


def _write(text: str, out: Path | None) -> None:
    """Write ``text`` to stdout, or to ``out`` through a temporary file renamed only once complete."""
    if out is None:
        sys.stdout.write(text)
        return
    with tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=f".{out.name}.", delete=False) as stream:
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
    return [f.question for f in report.findings if rank.get(f.severity, rank["high"]) >= rank[fail_on]]


def _say(message: str) -> None:
    """One progress or error line on stderr."""
    print(f"gdsec-audit: {message}", file=sys.stderr, flush=True)


def _prepare(args: argparse.Namespace) -> tuple[AuditConfig, nn.Module, Split]:
    """Validated settings, model and data (progress printed only once all are valid); ``ValueError`` otherwise."""
    config, out = _config(args), args.out
    if out is not None and (out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK)):
        raise ValueError(f"--out {out}: not a writable file path")
    if out is not None and out.exists() and any(p.exists() and out.samefile(p) for p in (args.model, args.data)):
        raise ValueError(f"--out {out}: would overwrite an input file")
    data, model = load_data(args.data), load_model(args.model)
    n_classes = _n_classes(model, data)
    _say(f"data: {len(data.y_train)} training rows, {len(data.y_test)} held-out rows shaped {tuple(data.x_test.shape[1:])}")
    kind = "export" if isinstance(model, torch.fx.GraphModule) else "torchscript"
    _say(f"model: {_KINDS[kind]}, {sum(p.numel() for p in model.parameters()):,} parameters, {n_classes} classes")
    return config, model, data


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gdsec-audit`` with ``argv`` (default: the command line); return the exit status.

    Taught in chapter 10.
    """
    try:
        args = _parser().parse_args(argv)
        config, model, data = _prepare(args)
        _say(f"auditing at eps = {config.eps:g}, exposure {config.exposure}, budget {args.budget}, seed {config.seed}")
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
        _say(f"error: the audit failed ({_one_line(error)})")
        return 3
    failing = _failing(report, args.fail_on)
    verdict = f"FAIL, reaching --fail-on {args.fail_on}: {', '.join(failing)}" if failing else "pass"
    _say(f"done in {time.perf_counter() - start:.1f} s; {verdict}" + (f"; report in {args.out}" if args.out else ""))
    return 1 if failing else 0
