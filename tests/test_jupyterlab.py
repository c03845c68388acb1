"""Chapter 1 in a real JupyterLab: run every cell, then move the learning-rate slider and see the kernel redraw.

JupyterLab is started on 127.0.0.1 with a random port and token, throwaway config/runtime/settings/
workspace folders and a scratch copy of ``notebooks/`` (so autosave never touches the repository). The
explorer must show its *live* face there, so the server's environment has ``CI`` removed and
``GDSEC_WIDGETS=live``. The server is stopped by its PID at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser_support import artifact_dir, chromium, missing

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01_descent_basics.ipynb"
SLIDER_LABEL = "learning rate"
RUN_TIMEOUT_S = 240
REDRAW_TIMEOUT_S = 60

IMAGE_DIGEST_JS = """
async (index) => {
  const control = document.querySelectorAll('[data-gdsec-live]')[index];
  let box = control.parentElement;
  while (box && !box.querySelector('img')) box = box.parentElement;
  const img = box ? Array.from(box.querySelectorAll('img')).find((i) => i.checkVisibility()) : null;
  if (!img || !img.complete || img.naturalWidth === 0) return null;
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const hash = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(hash)).map((b) => b.toString(16).padStart(2, '0')).join('');
}
"""

FIND_SLIDERS_JS = """
(label) => {
  const found = [];
  document.querySelectorAll('.jp-OutputArea .widget-slider').forEach((slider) => {
    const text = (slider.querySelector('.widget-label') || {}).textContent || '';
    if (!text.toLowerCase().includes(label)) return;
    const readout = slider.querySelector('.widget-readout');
    slider.dataset.gdsecLive = String(found.length);
    found.push({label: text, editable: !!readout && readout.getAttribute('contenteditable') === 'true',
                readout: readout ? readout.textContent : null});
  });
  return found;
}
"""

CELLS_STATE_JS = """
() => {
  const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map((p) => p.textContent.trim());
  return {
    prompts,
    errors: document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"], .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]').length,
    busy: prompts.some((p) => p.includes('*')),
    status: (document.querySelector('.jp-Notebook-ExecutionIndicator') || {dataset: {}}).dataset.status || null,
  };
}
"""  # noqa: E501


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, token: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        url + "api/status", headers={"Authorization": f"token {token}"}
    )
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError("jupyter lab did not answer /api/status in time")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server by its PID: SIGTERM (a clean shutdown that also stops its kernels), then SIGKILL."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _shutdown_kernels(url: str, token: str) -> None:
    headers = {"Authorization": f"token {token}"}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url + "api/kernels", headers=headers), timeout=10
        ) as r:
            kernels = json.load(r)
        for kernel in kernels:
            request = urllib.request.Request(
                url + f"api/kernels/{kernel['id']}", headers=headers, method="DELETE"
            )
            urllib.request.urlopen(request, timeout=10).close()
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        pass


@pytest.fixture
def lab(tmp_path: Path):
    """A throwaway JupyterLab serving a scratch copy of ``notebooks/``; yields (base URL, token)."""
    if not (ROOT / NOTEBOOK).is_file():
        missing(f"{NOTEBOOK} does not exist yet")
    if shutil.which("jupyter") is None and not Path(sys.executable).with_name("jupyter").exists():
        missing("jupyter is not installed")
    work = tmp_path / "course"
    shutil.copytree(
        ROOT / "notebooks",
        work / "notebooks",
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
    )
    state = {
        name: tmp_path / name.lower()
        for name in (
            "JUPYTER_CONFIG_DIR",
            "JUPYTER_RUNTIME_DIR",
            "JUPYTERLAB_SETTINGS_DIR",
            "JUPYTERLAB_WORKSPACES_DIR",
        )
    }
    for folder in state.values():
        folder.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in {"CI", "GDSEC_WIDGETS"}}
    env.update({key: str(value) for key, value in state.items()})
    env["GDSEC_WIDGETS"] = "live"
    env.pop(
        "MPLBACKEND", None
    )  # conftest sets Agg for the test process; the kernel uses the inline backend
    token, port = secrets.token_hex(16), _free_port()
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        "--ServerApp.port_retries=0",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
    ]
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for_server(url, token, process)
        yield url, token
    finally:
        _shutdown_kernels(url, token)
        _stop(process)
        log.close()
    assert process.returncode is not None, "jupyter lab is still running"


def _wait_for_run(page, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    state = page.evaluate(CELLS_STATE_JS)
    while time.monotonic() < deadline:
        state = page.evaluate(CELLS_STATE_JS)
        done = state["prompts"] and all(p.strip("[]: ").isdigit() for p in state["prompts"])
        if done and not state["busy"] and state["status"] == "idle":
            return state
        page.wait_for_timeout(500)
    raise AssertionError(f"the notebook did not finish in {timeout_s} s: {state}")


RUN_ALL_JS = """
async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  for (let i = 0; kernel && kernel.status !== 'idle' && i < 600; i++) await new Promise((r) => setTimeout(r, 100));
  await app.commands.execute('notebook:run-all-cells');
  return kernel ? kernel.status : null;
}
"""


def _run_all(page) -> dict:
    """Run every cell once the kernel is ready (retry once if the command was swallowed); wait for the end."""
    for _attempt in range(2):
        page.evaluate(RUN_ALL_JS)
        page.wait_for_timeout(3000)
        state = page.evaluate(CELLS_STATE_JS)
        if any(p != "[ ]:" for p in state["prompts"]):
            return _wait_for_run(page, RUN_TIMEOUT_S)
    raise AssertionError(f"run-all-cells did not start any cell: {state}")


def _wait_for_new_image(page, index: int, before: str | None, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    current = before
    while time.monotonic() < deadline:
        current = page.evaluate(IMAGE_DIGEST_JS, index)
        if current and current != before:
            return current
        page.wait_for_timeout(250)
    return current


def test_learning_rate_slider_redraws_in_the_kernel(lab: tuple[str, str]) -> None:
    url, token = lab
    shots = artifact_dir("jupyterlab")
    blocked: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})

        def route(route) -> None:
            if route.request.url.startswith(url) or route.request.url.startswith(
                ("data:", "blob:")
            ):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort("internetdisconnected")

        context.route("**/*", route)
        page = context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)[:300]))
        page.goto(f"{url}lab/tree/{NOTEBOOK}?token={token}", wait_until="load", timeout=90_000)
        page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=90_000)
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=30_000
        )
        state = _run_all(page)
        assert state["errors"] == 0, f"{state['errors']} cells raised an error"
        page.screenshot(path=str(shots / "after-run-all.png"))

        sliders = page.evaluate(FIND_SLIDERS_JS, SLIDER_LABEL)
        assert sliders, f"no slider labelled {SLIDER_LABEL!r} in the outputs"
        live = [i for i, s in enumerate(sliders) if s["editable"]]
        assert live, (
            f"the {SLIDER_LABEL!r} slider shows its precomputed face, not the live one: {sliders}"
        )
        index = live[0]
        slider = page.locator(f'[data-gdsec-live="{index}"]')
        slider.scroll_into_view_if_needed()
        readout = slider.locator(".widget-readout")
        first = _wait_for_new_image(page, index, None, REDRAW_TIMEOUT_S)
        assert first, "the explorer shows no image"
        value_before = float(readout.text_content())

        # keyboard: one step to the right
        handle = slider.locator(".noUi-handle").first
        handle.focus()
        handle.press("ArrowRight")
        second = _wait_for_new_image(page, index, first, REDRAW_TIMEOUT_S)
        value_after_key = float(readout.text_content())
        assert value_after_key > value_before, (value_before, value_after_key)
        assert second != first, "the keyboard moved the slider but the kernel did not redraw"

        # drag: to three quarters of the track
        track = slider.locator(".noUi-target").first.bounding_box()
        knob = handle.bounding_box()
        page.mouse.move(knob["x"] + knob["width"] / 2, knob["y"] + knob["height"] / 2)
        page.mouse.down()
        page.mouse.move(
            track["x"] + 0.75 * track["width"], knob["y"] + knob["height"] / 2, steps=15
        )
        page.mouse.up()
        third = _wait_for_new_image(page, index, second, REDRAW_TIMEOUT_S)
        value_after_drag = float(readout.text_content())
        assert abs(value_after_drag - value_after_key) > 1e-9, (value_after_key, value_after_drag)
        assert third != second, "the drag moved the slider but the kernel did not redraw"
        page.screenshot(path=str(shots / "after-drag.png"))
        assert not page_errors, page_errors
        context.close()
