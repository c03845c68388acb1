"""Shared pieces of the browser tests: find Chromium and Playwright, serve a folder on 127.0.0.1.

Browser tests SKIP locally when Chromium or Playwright are missing and FAIL under CI (``$CI`` set),
where ``.ci/run`` installs Debian's ``chromium``. Playwright drives the system browser through
``executable_path``; its own browser download (``playwright install``) is never used.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import in_ci

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
]


def missing(reason: str) -> None:
    """Skip the test locally; fail it under CI, where every tool must be present."""
    if in_ci():
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)


def chromium_path() -> str:
    """The system Chromium (``$GDSEC_CHROMIUM`` overrides), or skip/fail when there is none."""
    candidates = [
        os.environ.get("GDSEC_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    missing("Chromium is not installed (apt-get install -y chromium)")
    raise AssertionError("unreachable")


def sync_playwright():
    """Playwright's sync API, or skip/fail when the package is missing."""
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        missing("the playwright Python package is not installed")
    return start()


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless system Chromium driven by Playwright, closed on exit."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files without access logs on stderr."""

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 with a random port in a thread; yield its base URL (ending in /)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def artifact_dir(name: str) -> Path:
    """A fresh folder ``test-artifacts/<name>`` (git-ignored) for screenshots and reports."""
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- axe-core (accessibility rules), fetched from npm at test time ----------------------------------

#: The pinned axe-core tarball (``npm view axe-core@4.14.1 dist.integrity``).
AXE_VERSION = "4.14.1"
AXE_INTEGRITY = "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
#: WCAG 2.1 level A and AA rules.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_source() -> str:
    """The text of ``axe.min.js`` from the hash-checked, cached npm tarball (skip/fail without npm)."""
    import sys
    import tarfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
    import gdsec_vendor

    package = gdsec_vendor.Package(
        "axe-core", AXE_VERSION, AXE_INTEGRITY, {"package/axe.min.js": "axe.min.js"}
    )
    try:
        tarball = gdsec_vendor.fetch(package, gdsec_vendor.cache_dir())
    except Exception as error:  # noqa: BLE001 (any fetch failure means: no axe-core here)
        missing(f"could not fetch axe-core {AXE_VERSION} with npm: {error}")
    with tarfile.open(tarball, "r:gz") as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None
        return member.read().decode()


AXE_RUN_JS = """
async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return result.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({target: n.target.join(' '), html: n.html.slice(0, 200),
                                summary: (n.failureSummary || '').slice(0, 300)}))}));
}
"""


def axe_violations(page, source: str) -> list[dict]:
    """Run axe-core's WCAG 2.1 A/AA rules on the open page; return its violations."""
    page.add_script_tag(content=source)
    return page.evaluate(AXE_RUN_JS, AXE_TAGS)
