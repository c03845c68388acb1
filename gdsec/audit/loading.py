"""Loading what ``gdsec-audit`` audits, checked before any check runs: a saved model (TorchScript or a
``torch.export`` program, read without unpickling a ``torch.save`` pickle) and an ``.npz`` of data,
and the model's output on that data."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gdsec.attacks import looks_like_probabilities
from gdsec.data import Split
from gdsec.models import eval_mode

__all__ = [
    "ARRAYS",
    "KINDS",
    "MIN_ROWS_PER_CLASS",
    "check_classes",
    "check_device",
    "load_data",
    "load_model",
    "model_classes",
    "model_device",
    "on_device",
    "one_line",
]

#: The arrays DATA must hold.
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
#: The model formats ``load_model`` reads, by kind.
KINDS = {"torchscript": "TorchScript file", "export": "torch.export program"}
#: The fewest trusted (held-out) rows of each class the audit accepts: every per-class rate the
#: checks compare (label disputes, reference errors) needs a few rows to mean anything.
MIN_ROWS_PER_CLASS = 5


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message, prefixed with its type. Used in chapter 10."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def check_device(name: str) -> torch.device | None:
    """The device ``--device name`` asks for, checked available; None for ``auto``.

    Accepts auto, cpu, cuda, cuda:N and mps; anything else, or a device this machine lacks, raises
    ``ValueError`` naming ``--device``. Used in chapter 10.
    """
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: not one of auto, cpu, cuda, cuda:N, mps")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        have = f"{count} CUDA device(s)" if count else "no CUDA device"
        raise ValueError(f"--device {name}: not available, this machine has {have}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: not available, this machine has no MPS device")
    return device


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters (or buffers) are, CPU when it has none. Used in chapter 10."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def on_device(model: nn.Module, split: Split, device: torch.device) -> tuple[nn.Module, Split]:
    """``model`` and every tensor of ``split`` moved to ``device``. Used in chapter 10."""
    return model.to(device), Split(*(t.to(device) for t in split))


def _check_file(role: str, path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is an existing regular file."""
    if not path.is_file():
        raise ValueError(
            f"{role} {path}: {'not a regular file' if path.exists() else 'no such file'}"
        )


def _archive_kind(path: Path) -> str:
    """'export' or 'torchscript', read from the zip archive's member names (nothing is unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            tails = {name.split("/", 1)[-1] for name in archive.namelist()}
            damaged = archive.testzip()  # reads every member and checks its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise ValueError(
            f"MODEL {path}: not a TorchScript file or torch.export program ({one_line(error)})"
        ) from None
    if damaged is not None:
        raise ValueError(
            f"MODEL {path}: damaged file, member {damaged} fails its CRC check (copy it again)"
        )
    if "archive_format" in tails:
        return "export"
    if "constants.pkl" in tails or any(tail.startswith("code/") for tail in tails):
        return "torchscript"
    if "data.pkl" in tails:
        raise ValueError(
            f"MODEL {path}: a torch.save pickle (not loaded); save the model with torch.jit.save "
            "or torch.export.save"
        )
    raise ValueError(
        f"MODEL {path}: a zip archive that is neither TorchScript nor a torch.export program"
    )


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
        raise ValueError(
            f"MODEL {path}: cannot be loaded as a {KINDS[kind]} ({one_line(error)})"
        ) from None
    for name in (
        "train",
        "eval",
    ):  # module() refuses train()/eval(); export fixed the mode, the flag is harmless
        vars(program).pop(name, None)
    return program


def _read(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """Array ``key`` of the archive, integer or floating point, or ``ValueError`` naming it."""
    try:
        array = archive[key]
    except Exception as error:  # object arrays (pickles) and corrupt members
        raise ValueError(f"DATA {path}: array {key} cannot be read ({one_line(error)})") from None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"DATA {path}: {key} must hold real numbers, got dtype {array.dtype}")
    return array


def _check_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Raise ``ValueError`` naming the first array with a bad shape, dtype, length or range."""
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim < 2 or x.shape[0] < 2:
            raise ValueError(
                f"DATA {path}: x_{part} must be a batch (N, ...) of at least 2 rows, got shape {x.shape}"
            )
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError(
                f"DATA {path}: x_{part} has values outside [0, 1] (range [{x.min():.3g}, {x.max():.3g}])"
            )
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(
                f"DATA {path}: y_{part} must be 1-D integer labels, got dtype {y.dtype}, shape {y.shape}"
            )
        if len(y) != len(x):
            raise ValueError(
                f"DATA {path}: x_{part} has {len(x)} rows but y_{part} has {len(y)} labels"
            )
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(
            f"DATA {path}: x_train rows are {arrays['x_train'].shape[1:]}, x_test {arrays['x_test'].shape[1:]}"
        )


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
        raise ValueError(f"DATA {path}: not a readable .npz archive ({one_line(error)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"DATA {path}: a single .npy array; pack the four arrays with np.savez(path, x_train=..., ...)"
        )
    with archive:
        missing = [key for key in ARRAYS if key not in archive.files]
        if missing:
            raise ValueError(
                f"DATA {path}: missing array(s) {', '.join(missing)} (needs {', '.join(ARRAYS)})"
            )
        arrays = {key: _read(archive, key, path) for key in ARRAYS}
    _check_arrays(arrays, path)
    return Split(
        *(
            torch.from_numpy(
                np.ascontiguousarray(arrays[key], dtype=np.float32 if key[0] == "x" else np.int64)
            )
            for key in ARRAYS
        )
    )


def model_classes(model: nn.Module, split: Split) -> int:
    """The number C of logits ``model`` returns, after checking it maps DATA batches to (N, C) logits.

    Taught in chapter 10.
    """
    x, widths = split.x_test, set()
    for n in (1, min(16, len(x))):
        try:
            with eval_mode(model), torch.no_grad():
                out = model(x[:n])
        except Exception as error:  # the model's own failure, whatever its type
            hint = (
                "; export it with a dynamic batch dimension"
                if isinstance(model, torch.fx.GraphModule)
                else ""
            )
            raise ValueError(
                f"MODEL fails on a batch of {n} DATA input(s) shaped {tuple(x.shape[1:])}: "
                f"{one_line(error)}{hint}"
            ) from None
        got = (
            f"shape {tuple(out.shape)}, dtype {out.dtype}"
            if isinstance(out, torch.Tensor)
            else type(out).__name__
        )
        if (
            not isinstance(out, torch.Tensor)
            or not out.is_floating_point()
            or out.dim() != 2
            or out.shape[0] != n
        ):
            raise ValueError(
                f"MODEL must return a batch of logits (N, C); on {n} input(s) it returned {got}"
            )
        if out.shape[1] < 2 or not torch.isfinite(out).all():
            raise ValueError(f"MODEL must return finite logits for C >= 2 classes, got {got}")
        with eval_mode(model):
            probabilities = n > 1 and looks_like_probabilities(model, x[:n])
        if probabilities:
            raise ValueError(
                "MODEL returns probabilities (every row sums to 1); save it without its softmax"
            )
        widths.add(out.shape[1])
    count = widths.pop()
    for name, y in (("y_train", split.y_train), ("y_test", split.y_test)):
        if y.min() < 0 or y.max() >= count:
            raise ValueError(
                f"DATA: {name} has labels outside [0, {count}) (the model returns {count} "
                f"logits): found {int(y.min())} to {int(y.max())}"
            )
    return count


def check_classes(split: Split) -> None:
    """Raise ``ValueError`` in the user's words when the labels cannot support an audit.

    Both splits need two classes or more; every class of the training labels must appear in the
    trusted split, each with at least ``MIN_ROWS_PER_CLASS`` rows. Taught in chapter 10.
    """
    for name, y in (("y_train", split.y_train), ("y_test", split.y_test)):
        if len(torch.unique(y)) < 2:
            raise ValueError(
                f"DATA: {name} holds a single class ({int(y[0])}); the audit needs labelled rows "
                "of two classes or more"
            )
    counts = torch.bincount(split.y_test, minlength=int(split.y_train.max()) + 1)
    missing = sorted(set(split.y_train.tolist()) - set(split.y_test.tolist()))
    if missing:
        raise ValueError(
            f"DATA: class(es) {missing} appear in y_train but never in y_test; the trusted "
            "split must show every class the model was trained on"
        )
    few = [k for k, c in enumerate(counts.tolist()) if 0 < c < MIN_ROWS_PER_CLASS]
    if few:
        raise ValueError(
            f"DATA: y_test has fewer than {MIN_ROWS_PER_CLASS} rows of class(es) {few} "
            f"(counts {[int(counts[k]) for k in few]}); give the trusted split at least "
            f"{MIN_ROWS_PER_CLASS} rows of every class"
        )
