"""The GitHub Actions workflow is valid YAML that tests, builds and publishes the book to GitHub Pages."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "book.yml"


def _load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_parses_and_triggers() -> None:
    workflow = _load()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "push" in triggers and "pull_request" in triggers
    assert set(workflow["jobs"]) == {"build", "deploy"}
    for job in workflow["jobs"].values():
        assert job["runs-on"] and job["timeout-minutes"] > 0
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step


def test_build_job_tests_then_builds_the_site() -> None:
    build = _load()["jobs"]["build"]
    runs = _runs(build)
    assert "binder/requirements.txt" in runs, "CI should install CPU-only torch like Binder"
    assert runs.index(".ci/run") < runs.index("jupyter-book build . -W -n --keep-going")
    assert build["env"]["CI"] == "true"
    uses = _uses(build)
    assert {"actions/checkout", "actions/configure-pages", "actions/upload-pages-artifact"} <= set(uses)
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"


def test_deploy_job_publishes_to_pages() -> None:
    workflow = _load()
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert _uses(deploy) == ["actions/deploy-pages"]
    assert "refs/heads/main" in deploy["if"]
    assert workflow["permissions"] == {"contents": "read"}
