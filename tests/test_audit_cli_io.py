"""``gdsec-audit``'s inputs, outputs and CI integration (issue 20): new options and their bad inputs,
the JSON run record, JUnit XML, --baseline, --time-limit, incremental reports, model preparation.

The audit's five checks are replaced by instant fakes (``_fast``), so every case here is a unit
test of the command itself; the real checks run in tests/test_audit_cli.py.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_audit_cli import _check_bad_input, _export, _inprocess, _npz, _script
from torch import nn

from gdsec.audit import QUESTIONS, Finding, audit, cli
from gdsec.audit.ci import junit_xml, read_baseline, regressions
from gdsec.audit.loading import MIN_ROWS_PER_CLASS, model_device, on_device
from gdsec.audit.report import AuditReport
from gdsec.audit.wrapping import PixelModel, gradient_reaches_input, prepare_model
from gdsec.data import Split

from helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
XSD = ROOT / "tests" / "data" / "junit.xsd"


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits, digits_mlp) -> dict:
    """The honest digits MLP as TorchScript, and 300 training / 120 held-out digits as an .npz."""
    folder = tmp_path_factory.mktemp("audit_cli_io")
    arrays = {
        "x_train": digits.x_train[:300].numpy().copy(),
        "y_train": digits.y_train[:300].numpy().copy(),
        "x_test": digits.x_test[:120].numpy().copy(),
        "y_test": digits.y_test[:120].numpy().copy(),
    }
    np.savez(folder / "data.npz", **arrays)
    model = copy.deepcopy(digits_mlp).eval()
    path = _script(model, folder / "model.pt")
    return {"pt": path, "data": folder / "data.npz", "arrays": arrays, "model": model}


def _finding(question: str, severity: str = "low", robust: float = 0.9) -> Finding:
    """A made-up finding for ``question`` (adversarial testing carries a robust accuracy)."""
    evidence = {"robust_accuracy": robust, "robust_accuracy_ci95": [robust - 0.05, robust + 0.05]}
    return Finding(question, severity, f"{question} is {severity}", evidence, "do nothing")


def _fast(monkeypatch, severities: dict[str, str] | None = None, *, robust=0.9, each=None) -> None:
    """Make ``cli.audit`` answer every question at once with ``severities`` (default low)."""

    def check(question, model, split, config):
        if each is not None:
            each(question)
        return _finding(question, (severities or {}).get(question, "low"), robust)

    fakes = {q: functools.partial(check, q) for q in QUESTIONS}
    monkeypatch.setattr(cli, "audit", functools.partial(audit, checks=fakes))


def _args(files: dict, tmp: Path, *extra: str, fmt: str = "json") -> list[str]:
    """Arguments auditing the honest TorchScript file, writing ``fmt`` to ``tmp/report.<fmt>``."""
    out = tmp / f"report.{fmt}"
    return [str(files["pt"]), str(files["data"]), "--format", fmt, "--out", str(out), *extra]


def _run(files, tmp, capsys, *extra: str, fmt: str = "json") -> tuple[int, str, str]:
    """(status, report text, stderr) of a run with ``extra`` options."""
    status, out, err = _inprocess(_args(files, tmp, *extra, fmt=fmt), capsys)
    assert out == "", out
    return status, (tmp / f"report.{fmt}").read_text(), err


def _labels(files: dict, tmp: Path, **changes: np.ndarray) -> list[str]:
    """Arguments auditing the honest model on the fixture's data with label arrays changed."""
    return [str(files["pt"]), str(_npz(files, tmp / "bad.npz", **changes))]


def _crc_damaged(files: dict, tmp: Path) -> str:
    """The TorchScript file with one byte of a stored weight member flipped (zip still readable)."""
    data = bytearray(files["pt"].read_bytes())
    with zipfile.ZipFile(files["pt"]) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 16)
    lengths = data[info.header_offset + 26 : info.header_offset + 30]  # name, extra (local header)
    start = info.header_offset + 30 + int.from_bytes(lengths[:2], "little")
    start += int.from_bytes(lengths[2:], "little")
    data[start + 8] ^= 0xFF
    path = tmp / "flipped.pt"
    path.write_bytes(bytes(data))
    return str(path)


def _training_export(files: dict, tmp: Path) -> str:
    """A batch-norm model exported in training mode."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10)).train()
    return str(_export(model, torch.from_numpy(files["arrays"]["x_test"]), tmp / "bn.pt2"))


class _Quantised(nn.Module):
    """``model`` behind a quantising defence computed under no_grad."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = (x * 8).round() / 8
        return self.model(x)


def _not_a_report(tmp: Path) -> str:
    (tmp / "old.json").write_text(json.dumps({"findings": [{"question": "x"}]}))
    return str(tmp / "old.json")


#: name -> (arguments from the fixture files and a scratch folder, what the one error line says).
BAD = {
    "unknown --only": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--only", "privacy"],
        r"argument --only: invalid choice: 'privacy'",
    ),
    "--only and --skip leave nothing": (
        lambda f, t: (
            [str(f["pt"]), str(f["data"]), "--only", "gradient_exposure"]
            + ["--skip", "gradient_exposure"]
        ),
        r"--only/--skip leave no question to answer",
    ),
    "--n-eval 0": (lambda f, t: [str(f["pt"]), str(f["data"]), "--n-eval", "0"], r"--n-eval must"),
    "--norm 2": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--norm", "2"],
        r"--norm 2: the audit questions attack in L-inf only",
    ),
    "--mean without --std": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--mean", "0.5"],
        r"--mean and --std must be given together",
    ),
    "--mean of the wrong length": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--mean", "0.5", "0.5", "--std", "1", "1"],
        r"--mean: DATA has 1 channel\(s\) on axis 1, got 2 value\(s\)",
    ),
    "--std zero": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--mean", "0.5", "--std", "0"],
        r"--std must be positive",
    ),
    "--device not a device": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--device", "tpu"],
        r"--device tpu: not one of auto, cpu, cuda, cuda:N, mps",
    ),
    "--device absent here": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--device", "cuda:99"],
        r"--device cuda:99: not available, this machine has (no CUDA device|\d+ CUDA device)",
    ),
    "--batch-size 0": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--batch-size", "0"],
        r"--batch-size must be a positive number of rows, got 0",
    ),
    "--batch-size not a number": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--batch-size", "all"],
        r"argument --batch-size: invalid int value: 'all'",
    ),
    "--time-limit 0": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--time-limit", "0"],
        r"--time-limit must be a positive number of seconds",
    ),
    "missing --baseline": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--baseline", str(t / "old.json")],
        r"--baseline \S+old\.json: No such file",
    ),
    "--baseline not JSON": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--baseline", str(f["data"])],
        r"--baseline \S+data\.npz: not JSON",
    ),
    "--baseline not a report": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--baseline", _not_a_report(t)],
        r"--baseline \S+old\.json: not a gdsec-audit JSON report",
    ),
    "--out under a file": (
        lambda f, t: [str(f["pt"]), str(f["data"]), "--out", str(f["data"] / "r.xml")],
        r"--out \S+r\.xml: not a writable file path",
    ),
    "damaged weights (CRC)": (
        lambda f, t: [_crc_damaged(f, t), str(f["data"])],
        r"MODEL \S*flipped\.pt: damaged file, member \S+ fails its CRC check",
    ),
    "one class in y_train": (
        lambda f, t: _labels(f, t, y_train=np.full(300, 3)),
        r"DATA: y_train holds a single class \(3\)",
    ),
    "a training class absent from y_test": (
        lambda f, t: _labels(
            f, t, y_test=np.where(f["arrays"]["y_test"] == 7, 1, f["arrays"]["y_test"])
        ),
        r"DATA: class\(es\) \[7\] appear in y_train but never in y_test",
    ),
    "too few trusted rows of a class": (
        lambda f, t: _labels(
            f, t, y_test=np.where(np.arange(120) < 118, f["arrays"]["y_test"] % 9, 9)
        ),
        rf"DATA: y_test has fewer than {MIN_ROWS_PER_CLASS} rows of class\(es\) \[9\] \(counts \[2\]\)",
    ),
    "torch.export program in training mode": (
        lambda f, t: [_training_export(f, t), str(f["data"])],
        r"MODEL is a torch\.export program captured in training mode: \S+ \(aten::batch_norm",
    ),
}


#: Bad inputs slower than a second (torch.export), run in the integration tier.
SLOW = {"torch.export program in training mode"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.integration] if n in SLOW else []) for n in BAD]
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    name, files, tmp_path, capsys, monkeypatch
):
    _fast(monkeypatch)
    args = BAD[name][0](files, tmp_path)
    if "--out" not in args:
        args += ["--out", str(tmp_path / "report.json")]
    before = set(tmp_path.rglob("*"))
    _check_bad_input(*_inprocess(args, capsys), BAD[name][1], tmp_path, before)


def test_json_report_stands_on_its_own(files, tmp_path, capsys, monkeypatch):
    _fast(monkeypatch, {"training_security": "medium"})
    status, text, err = _run(files, tmp_path, capsys, "--n-eval", "32", "--seed", "3")
    report = json.loads(text)
    assert status == 0 and report["exit_status"] == 0 and report["schema_version"] == 2, err
    assert report["verdict"] == {
        "result": "pass",
        "worst": "medium",
        "fail_on": "high",
        "failing": [],
        "regressions": [],
    }
    for key in ("model", "data"):
        digest = hashlib.sha256(files[key if key == "data" else "pt"].read_bytes()).hexdigest()
        assert report["inputs"][key]["sha256"] == digest
    assert report["versions"]["torch"] == torch.__version__ and report["versions"]["gdsec"]
    assert report["options"]["n_eval"] == 32 and report["options"]["seed"] == 3
    assert report["settings"]["n_eval"] == 32
    assert report["incomplete"] is False and report["completed_questions"] == list(QUESTIONS)


def test_device_and_batch_size_reach_the_checks(files, tmp_path, capsys, monkeypatch):
    seen, moved = [], []

    def check(question, model, split, config):
        seen.append((model_device(model), split.x_test.device, config.batch_size))
        return _finding(question)

    def move(model, split, device):
        moved.append(device)
        return on_device(model, split, device)

    fakes = {q: functools.partial(check, q) for q in QUESTIONS}
    monkeypatch.setattr(cli, "audit", functools.partial(audit, checks=fakes))
    monkeypatch.setattr(cli, "on_device", move)
    only = ("--only", "gradient_exposure")
    status, text, err = _run(files, tmp_path, capsys, "--device", "cpu", "--batch-size", "8", *only)
    report = json.loads(text)
    cpu = torch.device("cpu")
    assert status == 0 and moved == [cpu] and seen == [(cpu, cpu, 8)], err
    assert report["settings"]["batch_size"] == 8 and report["options"]["device"] == "cpu"
    assert report["inputs"]["model"]["device"] == "cpu" and "classes, on cpu" in err
    _run(files, tmp_path, capsys, *only)  # auto: where the model's parameters are
    assert moved[-1] == cpu and seen[-1] == (cpu, cpu, None)


def test_markdown_and_html_lead_with_the_verdict(files, tmp_path, capsys, monkeypatch):
    _fast(monkeypatch, {"adversarial_testing": "high"})
    status, text, _ = _run(files, tmp_path, capsys, fmt="md")
    assert status == 1
    assert text.splitlines()[2] == (
        "**Verdict: FAIL (worst finding: high; reaching --fail-on high: adversarial_testing)**"
    )
    _, page, _ = _run(files, tmp_path, capsys, fmt="html")
    assert page.index("Verdict: FAIL") < page.index("<table")


def test_only_and_skip_answer_the_chosen_questions(files, tmp_path, capsys, monkeypatch):
    _fast(monkeypatch)
    extra = [
        "--only",
        "adversarial_testing",
        "--only",
        "gradient_exposure",
        "--skip",
        "gradient_exposure",
    ]
    status, text, _ = _run(files, tmp_path, capsys, *extra)
    report = json.loads(text)
    assert status == 0 and [f["question"] for f in report["findings"]] == ["adversarial_testing"]
    assert set(report["not_run"]) == set(QUESTIONS) - {"adversarial_testing"}


def _validate(text: str) -> None:
    """Raise unless ``text`` is JUnit XML valid against tests/data/junit.xsd."""
    etree = pytest.importorskip("lxml.etree")
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    schema.assertValid(etree.fromstring(text.encode()))


def test_junit_has_a_case_per_question_and_validates(files, tmp_path, capsys, monkeypatch):
    _fast(monkeypatch, {"adversarial_testing": "high", "training_security": "medium"})
    status, text, _ = _run(
        files,
        tmp_path,
        capsys,
        "--fail-on",
        "medium",
        "--skip",
        "convergence_properties",
        fmt="junit",
    )
    _validate(text)
    etree = pytest.importorskip("lxml.etree")
    suite = etree.fromstring(text.encode())
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert status == 1 and list(cases) == list(QUESTIONS)
    assert {c.get("classname") for c in cases.values()} == {"gdsec-audit"}
    failed = sorted(n for n, c in cases.items() if c.find("failure") is not None)
    assert failed == ["adversarial_testing", "training_security"] and suite.get("failures") == "2"
    assert cases["convergence_properties"].find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["sha256.model"] == hashlib.sha256(files["pt"].read_bytes()).hexdigest()
    assert props["verdict"].startswith("FAIL") and props["exit_status"] == "1"


def test_the_schema_rejects_a_broken_junit_file():
    report = AuditReport("m", (_finding("gradient_exposure"),))
    good = junit_xml(report, "high")
    _validate(good)
    with pytest.raises(Exception, match="name"):
        _validate(good.replace('name="gradient_exposure"', ""))


def test_baseline_fails_a_worse_audit_and_passes_an_equal_one(files, tmp_path, capsys, monkeypatch):
    _fast(monkeypatch)
    _, text, _ = _run(files, tmp_path, capsys)
    old = tmp_path / "old.json"
    old.write_text(text)
    status, text, err = _run(files, tmp_path, capsys, "--baseline", str(old))
    assert status == 0 and json.loads(text)["verdict"]["regressions"] == [], err
    _fast(monkeypatch, {"training_security": "medium"})
    status, text, err = _run(files, tmp_path, capsys, "--baseline", str(old))
    assert status == 1 and "worse than --baseline: training_security: low -> medium" in err
    assert json.loads(text)["verdict"]["result"] == "fail"
    _fast(monkeypatch, robust=0.6)
    status, text, err = _run(files, tmp_path, capsys, "--baseline", str(old))
    assert status == 1 and "robust accuracy 0.600, below the baseline's 95 % interval" in err


def test_baseline_reader_and_comparison_are_pure():
    report = AuditReport("m", (_finding("adversarial_testing", robust=0.86),))
    baseline = json.loads(AuditReport("m", (_finding("adversarial_testing"),)).to_json())
    assert regressions(report, baseline) == [], "within the baseline's interval (0.85-0.95)"
    worse = AuditReport("m", (_finding("adversarial_testing", robust=0.84),))
    assert len(regressions(worse, baseline)) == 1


def test_time_limit_stops_at_a_question_boundary_with_exit_4(files, tmp_path, capsys, monkeypatch):
    _fast(monkeypatch, each=lambda q: time.sleep(0.4))
    status, text, err = _run(files, tmp_path, capsys, "--time-limit", "0.2")
    report = json.loads(text)
    assert status == 4 and report["exit_status"] == 4 and report["incomplete"] is True, err
    assert report["completed_questions"] == ["gradient_exposure"]
    assert "reached before adversarial_testing" in report["not_run"]["adversarial_testing"]
    assert "INCOMPLETE" in err.splitlines()[-1]


def test_the_report_is_rewritten_after_each_question(files, tmp_path, capsys, monkeypatch):
    seen = {}

    def peek(question):
        path = tmp_path / "report.json"
        seen[question] = json.loads(path.read_text()) if path.exists() else None

    _fast(monkeypatch, each=peek)
    status, text, _ = _run(files, tmp_path, capsys)
    assert seen["gradient_exposure"] is None
    third = seen["training_security"]
    assert third["incomplete"] is True and third["exit_status"] is None
    assert third["completed_questions"] == ["gradient_exposure", "adversarial_testing"]
    assert json.loads(text)["incomplete"] is False


def test_progress_lines_and_quiet(files, tmp_path, capsys, monkeypatch):
    _fast(monkeypatch)
    _, _, err = _run(files, tmp_path, capsys)
    assert (
        "[1/5] gradient_exposure: started at" in err and "[2/5] adversarial_testing: low in" in err
    )
    assert "ETA" in err and err.splitlines()[-1].startswith("gdsec-audit: done in")
    status, _, err = _run(files, tmp_path, capsys, "--quiet")
    assert status == 0 and err == ""


def _split(x: torch.Tensor) -> Split:
    y = torch.arange(len(x)) % 2
    return Split(x, y, x, y)


def test_prepare_model_wraps_normalisation_and_float64_and_notes_it():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 4, 4)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(48, 2)).double()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    model, notes = prepare_model(_Double(inner), _split(x), mean, std)
    expected = inner(
        ((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).double()
    )
    out = model(x)
    assert isinstance(model, PixelModel) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected.float())
    assert any("float64" in n for n in notes) and any("normalised per channel" in n for n in notes)
    same, notes = prepare_model(inner.float(), _split(x))
    assert same is inner and notes == []


class _Double(nn.Module):
    """Float64 logits from a float32 batch."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.double())


class _NoGradDefence(nn.Module):
    """A quantising defence computed under no_grad: no gradient reaches the input."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = (x * 4).round() / 4
        return self.linear(x)


def test_no_gradient_path_is_audited_with_a_note_and_training_mode_noted():
    x = torch.rand(6, 4)
    assert not gradient_reaches_input(_NoGradDefence(), x)
    assert gradient_reaches_input(nn.Linear(4, 2), x)
    _, notes = prepare_model(_NoGradDefence(), _split(x))
    assert any("no gradient path to its inputs" in note for note in notes)
    scripted = torch.jit.script(nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.0))).train()
    _, notes = prepare_model(scripted, _split(x))
    assert not scripted.training and any("audited in eval mode" in n for n in notes)


def test_read_baseline_accepts_a_report(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(AuditReport("m", (_finding("gradient_exposure"),)).to_json())
    assert read_baseline(path)["findings"][0]["question"] == "gradient_exposure"


class _ExpectsNormalised(nn.Module):
    """``model`` behind the inverse of ``(x - 0.5) / 0.25``: it expects normalised inputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z * 0.25 + 0.5)


@pytest.mark.integration
def test_mean_and_std_keep_eps_in_pixel_units(files, tmp_path, capsys):
    wrapped = _script(_ExpectsNormalised(files["model"]).eval(), tmp_path / "normalised.pt")
    robust = []
    for model, extra in ((files["pt"], []), (wrapped, ["--mean", "0.5", "--std", "0.25"])):
        args = [str(model), str(files["data"]), "--budget", "quick", "--eps", "0.05"]
        args += ["--only", "adversarial_testing", "--format", "json", "--fail-on", "never", *extra]
        status, out, err = _inprocess(args, capsys)
        assert status == 0, err
        robust.append(json.loads(out)["findings"][0]["evidence"]["robust_accuracy"])
    assert robust[0] == pytest.approx(robust[1], abs=0.02), "the same model at the same pixel eps"
    assert "normalised per channel" in err


def test_a_check_raising_value_error_is_a_bug_exit_3(files, tmp_path, capsys, monkeypatch):
    def fail(question):
        if question == "training_security":
            raise ValueError("a check's own bug")

    _fast(monkeypatch, each=fail)
    status, out, err = _inprocess(_args(files, tmp_path), capsys)
    assert status == 3 and out == ""
    assert err.splitlines()[-1] == (
        "gdsec-audit: error: the audit failed (RuntimeError: ValueError: a check's own bug)"
    )
    partial = json.loads((tmp_path / "report.json").read_text())
    assert partial["incomplete"] is True and len(partial["completed_questions"]) == 2


def test_audit_validates_questions_and_progress(files):
    x = torch.from_numpy(files["arrays"]["x_test"])
    split = Split(x, torch.arange(len(x)) % 10, x, torch.arange(len(x)) % 10)
    fakes = {q: functools.partial(lambda q, *a: _finding(q), q) for q in QUESTIONS}
    for bad in (["privacy"], [], "adversarial_testing"):
        with pytest.raises(ValueError, match="questions"):
            audit(files["model"], split, checks=fakes, questions=bad)
    with pytest.raises(ValueError, match="progress must be"):
        audit(files["model"], split, checks=fakes, progress="loud")
    calls = []
    report = audit(
        files["model"],
        split,
        checks=fakes,
        questions=["convergence_properties", "gradient_exposure"],
        progress=lambda stage, finding: calls.append((stage, finding is not None)),
    )
    assert [f.question for f in report.findings] == ["gradient_exposure", "convergence_properties"]
    assert calls == [
        ("gradient_exposure", False),
        ("gradient_exposure", True),
        ("convergence_properties", False),
        ("convergence_properties", True),
    ]


@pytest.mark.integration
def test_a_defence_with_no_gradient_path_is_audited_and_flagged(files, tmp_path, capsys):
    """The most extreme masking (a quantiser under torch.no_grad) is measured, not refused: zero
    gradients flagged, the gradient-free and adaptive attacks decide, question 4 fails it."""
    model = str(_script(_Quantised(files["model"]), tmp_path / "q.pt"))
    out = tmp_path / "report.json"
    argv = [model, str(files["data"]), "--format", "json", "--out", str(out), "--budget", "quick"]
    status, _, err = _inprocess([*argv, "--only", "robustness_verification", "--quiet"], capsys)
    report = json.loads(out.read_text())
    (finding,) = report["findings"]
    assert status == 1 and finding["severity"] == "high", (status, finding["summary"], err)
    assert "zero-gradient" in finding["summary"]
    assert any("no gradient path" in note for note in report["inputs"]["model"]["notes"])
