"""The built book in a real browser, with the network cut: what a reader in an offline lab sees.

The book is built once (``built_book``), served from 127.0.0.1, and every HTML page is opened in
headless Chromium while every request that does not go to 127.0.0.1 is aborted and counted as a
failure. One visit per page collects everything the tests below assert:

* no failed request, no HTTP error, no request leaving the machine, no JavaScript error;
* every figure in the article, explorer views included, has its image (``naturalWidth > 0``) and alt
  text that is not a path (explorer views get theirs from ``gdsec.widgets.core.DescribedImage`` and
  the book extension's ``gdsec-a11y.js``);
* axe-core (fetched from npm at test time, hash-checked, cached) finds no critical or serious
  violation of the WCAG 2.1 A and AA rules on any page;
* math is typeset by MathJax (no raw TeX left, no MathJax error nodes);
* every kernel-free widget control (``SelectionSlider`` moved by keyboard and by drag,
  ``ToggleButtons`` clicked) changes the image that is shown (compared by the image's bytes);
* no progress-bar widget text (``FloatProgress``) on any page;
* a full-page screenshot per page in ``test-artifacts/browser-book/`` and a ``report.json`` with the
  counts of pages, requests and failures.

Separate tests check that the sidebar reaches every chapter, that search finds a term, that axe
does report a violation planted in a page (so the accessibility check can fail), that the explorer
controls are reached with Tab and move with the arrow keys, that every figure sits on a light
backdrop in the theme's dark mode (pixels of an element screenshot), and that each chapter's
download button offers its notebook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest
import yaml
from browser_support import artifact_dir, axe_source, axe_violations, chromium, missing, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("book")]

ROOT = Path(__file__).resolve().parents[1]
SEARCH_TERM = "gradient"
PAGE_TIMEOUT_MS = 30_000
CHANGE_TIMEOUT_MS = 5_000
VIEWPORT = {"width": 1280, "height": 900}
#: axe-core impacts that fail the accessibility test.
BLOCKING_IMPACTS = {"critical", "serious"}
#: In dark mode, the median brightness (0-255) of each figure's own margin (a ring just inside the
#: picture) must reach this: a figure drawn on white stays light (the theme dims images to about 220);
#: a transparent one shows the dark page (about 20).
LIGHT_BACKDROP = 150

# A caption that is a file path or file name, not a description.
PATH_LIKE_ALT = re.compile(r"^\S*[/\\]\S*$|^\S+\.(png|jpe?g|gif|svg|webp)$", re.IGNORECASE)
# TeX left in the text after MathJax ran: \( \) \[ \] $$, or $...$ holding a command, ^ or _.
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\n]{0,200}(\\[A-Za-z]+|[\^_])[^$\n]{0,200}\$")


def toc_documents(toc_file: Path) -> list[str]:
    """Every document named in a Jupyter Book ``_toc.yml`` (root first), in reading order."""
    toc = yaml.safe_load(toc_file.read_text())
    found = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                found.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    walk(toc.get("parts", []))
    walk(toc.get("chapters", []))
    walk(toc.get("sections", []))
    return [str(Path(doc).with_suffix("")) for doc in found]


REDIRECT = re.compile(
    r"""<meta\s+http-equiv=["']refresh["']\s+content=["'][^"']*url=([^"']+)["']""", re.IGNORECASE
)


def html_pages(html: Path) -> list[str]:
    """Every page of the built site (relative paths), skipping asset folders such as ``_static``."""
    pages = []
    for path in sorted(html.rglob("*.html")):
        relative = path.relative_to(html)
        if relative.parts[0].startswith("_") or relative.parts[0] in {"reports", "jupyter_execute"}:
            continue
        pages.append(relative.as_posix())
    return pages


def redirect_target(html: Path, page: str) -> str | None:
    """The page a redirect stub (``<meta http-equiv="refresh">``, e.g. ``index.html``) points to."""
    match = REDIRECT.search((html / page).read_text(errors="replace")[:4000])
    return match.group(1).strip() if match else None


# --- JavaScript run in the page ------------------------------------------------------------------

SETTLE_JS = """
async () => {
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  for (let i = 0; i < 200; i++) {
    const rendered = Array.from(document.querySelectorAll('.widget-subarea')).filter((a) => a.children.length > 0).length;
    if (rendered >= views) break;
    await wait(100);
  }
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
  return views;
}
"""  # noqa: E501

INSPECT_JS = """
() => {
  const main = document.querySelector('main') || document.body;
  const images = Array.from(main.querySelectorAll('img')).map((img) => ({
    src: (img.currentSrc || img.src || '').slice(0, 200),
    alt: img.getAttribute('alt'),
    width: img.naturalWidth,
    widget: !!img.closest('.jupyter-widgets, .widget-subarea, .widget-image'),
    visible: img.checkVisibility ? img.checkVisibility() : img.offsetParent !== null,
  }));
  const maths = Array.from(main.querySelectorAll('.math'));
  const text = main.cloneNode(true);
  text.querySelectorAll('pre, code, script, style, mjx-container, .highlight, .jupyter-widgets').forEach((e) => e.remove());
  return {
    images,
    math_nodes: maths.length,
    math_typeset: maths.filter((m) => m.querySelector('mjx-container')).length,
    math_errors: main.querySelectorAll('mjx-merror').length,
    mathjax_loaded: !!(window.MathJax && window.MathJax.startup),
    prose: text.textContent,
    body_text: document.body.innerText,
    progress_widgets: (document.documentElement.outerHTML.match(/FloatProgress/g) || []).length,
    widget_views: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgets_rendered: Array.from(document.querySelectorAll('.widget-subarea')).filter((a) => a.children.length > 0).length,
  };
}
"""  # noqa: E501

# Tag every widget control inside the article; return their kinds.
TAG_CONTROLS_JS = """
() => {
  const main = document.querySelector('main') || document.body;
  const found = Array.from(main.querySelectorAll('.widget-slider, .widget-toggle-buttons'));
  return found.map((el, i) => { el.dataset.gdsecControl = String(i);
    return el.classList.contains('widget-toggle-buttons') ? 'toggle' : 'slider'; });
}
"""

# The bytes (SHA-256) of the images visible in the explorer that holds control ``index``, its
# readout, and whether every visible image is loaded.
VIEW_STATE_JS = """
async (index) => {
  const control = document.querySelector(`[data-gdsec-control="${index}"]`);
  let box = control.parentElement;
  while (box && !box.querySelector('.widget-image, img')) box = box.parentElement;
  if (!box) return {images: [], readout: null, loaded: false, box: false};
  const shown = Array.from(box.querySelectorAll('img')).filter((img) => img.checkVisibility());
  const digests = [];
  for (const img of shown) {
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const hash = await crypto.subtle.digest('SHA-256', bytes);
    digests.push(Array.from(new Uint8Array(hash)).map((b) => b.toString(16).padStart(2, '0')).join(''));
  }
  const readout = control.querySelector('.widget-readout');
  const active = control.querySelector('.mod-active');
  return {
    images: digests,
    readout: readout ? readout.textContent : (active ? active.textContent : null),
    loaded: shown.length > 0 && shown.every((img) => img.complete && img.naturalWidth > 0),
    box: true,
  };
}
"""


# --- one visit per page ---------------------------------------------------------------------------


def _wait_for_change(page, index: int, before: dict) -> dict:
    """Poll the explorer of control ``index`` until its shown images differ from ``before``."""
    deadline = CHANGE_TIMEOUT_MS
    state = before
    while deadline > 0:
        state = page.evaluate(VIEW_STATE_JS, index)
        if state["images"] and state["images"] != before["images"] and state["loaded"]:
            return state
        page.wait_for_timeout(100)
        deadline -= 100
    return state


def _exercise_controls(page) -> list[dict]:
    """Move every slider (keyboard, then drag) and click every toggle group; record what changed."""
    results = []
    for index, kind in enumerate(page.evaluate(TAG_CONTROLS_JS)):
        control = page.locator(f'[data-gdsec-control="{index}"]')
        control.scroll_into_view_if_needed()
        before = page.evaluate(VIEW_STATE_JS, index)
        record = {
            "index": index,
            "kind": kind,
            "has_view": before["box"],
            "initially_loaded": before["loaded"],
        }
        if kind == "slider":
            handle = control.locator(".noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            after = _wait_for_change(page, index, before)
            record["keyboard"] = {
                "changed": after["images"] != before["images"] and after["loaded"],
                "readout": [before["readout"], after["readout"]],
            }
            # then drag the handle to the far end away from where it is now
            track = control.locator(".noUi-target").first.bounding_box()
            knob = handle.bounding_box()
            start = (knob["x"] + knob["width"] / 2, knob["y"] + knob["height"] / 2)
            left_half = start[0] < track["x"] + track["width"] / 2
            end_x = track["x"] + track["width"] + 20 if left_half else track["x"] - 20
            page.mouse.move(*start)
            page.mouse.down()
            page.mouse.move(end_x, start[1], steps=12)
            page.mouse.up()
            dragged = _wait_for_change(page, index, after)
            record["drag"] = {
                "changed": dragged["images"] != after["images"] and dragged["loaded"],
                "readout": [after["readout"], dragged["readout"]],
            }
        else:
            buttons = control.locator("button")
            target = None
            for position in range(buttons.count()):
                if "mod-active" not in (buttons.nth(position).get_attribute("class") or ""):
                    target = buttons.nth(position)
                    break
            if target is None:
                record["click"] = {"changed": False, "readout": [before["readout"], None]}
            else:
                target.click()
                after = _wait_for_change(page, index, before)
                record["click"] = {
                    "changed": after["images"] != before["images"] and after["loaded"],
                    "readout": [before["readout"], after["readout"]],
                }
        results.append(record)
    return results


def _visit(context, base: str, page_path: str, shots: Path, axe: str) -> dict:
    """Open one page offline, let widgets and math settle, inspect it, exercise widgets, screenshot it."""
    page = context.new_page()
    log = {"requests": [], "failed": [], "http_errors": [], "console_errors": [], "page_errors": []}
    page.on("request", lambda request: log["requests"].append(request.url))
    page.on(
        "requestfailed", lambda request: log["failed"].append(f"{request.url} ({request.failure})")
    )
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and log["http_errors"].append(f"{response.status} {response.url}")
        ),
    )
    page.on(
        "console",
        lambda message: (
            message.type == "error" and log["console_errors"].append(message.text[:500])
        ),
    )
    page.on("pageerror", lambda error: log["page_errors"].append(str(error)[:500]))
    try:
        page.goto(urljoin(base, page_path), wait_until="load", timeout=PAGE_TIMEOUT_MS)
        page.evaluate(SETTLE_JS)
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        facts = page.evaluate(INSPECT_JS)
        violations = axe_violations(page, axe)
        shot = shots / (page_path.replace("/", "__").removesuffix(".html") + ".png")
        page.screenshot(path=str(shot), full_page=True)
        controls = _exercise_controls(page)
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
    finally:
        page.close()
    return {
        "page": page_path,
        **log,
        **facts,
        "controls": controls,
        "screenshot": str(shot),
        "axe": violations,
    }


@pytest.fixture(scope="module")
def site(built_book: dict) -> dict:
    """The built book's HTML folder, its pages and its table of contents."""
    html = built_book["html"]
    if not (html / "index.html").is_file():
        pytest.fail("the book did not build (no index.html):\n" + built_book["output"][-3000:])
    if "could not fetch the offline assets" in built_book["output"]:
        missing("the build could not fetch the offline assets with npm, so pages use CDNs")
    pages = html_pages(html)
    redirects = {page: redirect_target(html, page) for page in pages}
    return {
        "html": html,
        "pages": [page for page in pages if redirects[page] is None],
        "redirects": {page: target for page, target in redirects.items() if target is not None},
        "toc": toc_documents(built_book["root"] / "_toc.yml"),
    }


@pytest.fixture(scope="module")
def served(site: dict) -> str:
    """The built book served on 127.0.0.1; yields the base URL."""
    with serve(site["html"]) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for this module."""
    with chromium() as instance:
        yield instance


def offline_context(browser, base: str, blocked: list[str]):
    """A browser context where every request that is not for ``base`` is aborted and recorded."""
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")

    def route(route) -> None:
        url = route.request.url
        if url.startswith(base) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", route)
    return context


@pytest.fixture(scope="module")
def axe() -> str:
    """axe-core's ``axe.min.js`` (npm tarball, integrity-checked, cached)."""
    return axe_source()


@pytest.fixture(scope="module")
def visits(browser, served: str, site: dict, axe: str) -> dict[str, dict]:
    """Every page visited once with the network cut; the results keyed by page, plus report.json."""
    shots = artifact_dir("browser-book")
    results = {}
    for page_path in site["pages"]:
        blocked: list[str] = []
        context = offline_context(browser, served, blocked)
        try:
            results[page_path] = _visit(context, served, page_path, shots, axe)
        finally:
            context.close()
        results[page_path]["blocked"] = blocked
    summary = {
        "pages": len(results),
        "requests": sum(len(v["requests"]) for v in results.values()),
        "failed_requests": sum(len(v["failed"]) + len(v["http_errors"]) for v in results.values()),
        "blocked_external_requests": sum(len(v["blocked"]) for v in results.values()),
        "javascript_errors": sum(
            len(v["console_errors"]) + len(v["page_errors"]) for v in results.values()
        ),
        "widget_controls_exercised": sum(len(v["controls"]) for v in results.values()),
        "axe_blocking_violations": sum(
            len(x["nodes"])
            for v in results.values()
            for x in v["axe"]
            if x["impact"] in BLOCKING_IMPACTS
        ),
        "chapters_without_widget_controls": [
            p for p, v in results.items() if p.startswith("notebooks/") and not v["controls"]
        ],
    }
    report = {
        "summary": summary,
        "pages": {
            k: {kk: vv for kk, vv in v.items() if kk not in {"prose", "body_text"}}
            for k, v in results.items()
        },
    }
    (shots / "report.json").write_text(json.dumps(report, indent=1))
    print(f"\nbrowser-book summary: {summary}")
    return results


# --- tests --------------------------------------------------------------------------------------


def test_every_toc_document_is_a_page(site: dict) -> None:
    missing = [doc for doc in site["toc"] if f"{doc}.html" not in site["pages"]]
    assert not missing, f"documents in _toc.yml without a built page: {missing}"


def test_redirect_stubs_lead_to_pages(site: dict) -> None:
    for page, target in site["redirects"].items():
        resolved = (Path(page).parent / target.split("#")[0]).as_posix()
        assert resolved in site["pages"], f"{page} redirects to {target}, which is not a page"


def test_pages_load_offline_without_failed_or_external_requests(visits: dict) -> None:
    problems = {
        page: {
            "failed": v["failed"],
            "http_errors": v["http_errors"],
            "left_the_machine": v["blocked"],
        }
        for page, v in visits.items()
        if v["failed"] or v["http_errors"] or v["blocked"]
    }
    assert not problems, json.dumps(problems, indent=1)
    assert all(v["requests"] for v in visits.values())


def test_no_javascript_errors(visits: dict) -> None:
    errors = {
        page: v["console_errors"] + v["page_errors"]
        for page, v in visits.items()
        if v["console_errors"] or v["page_errors"]
    }
    assert not errors, json.dumps(errors, indent=1)


def test_figures_have_images_and_alt_text(visits: dict) -> None:
    problems = []
    widget_images = 0
    for page, v in visits.items():
        for image in v["images"]:
            if image["widget"]:
                widget_images += 1
                if image["visible"] and image["width"] == 0:
                    problems.append(f"{page}: widget image not loaded {image['src']}")
            elif image["width"] == 0:
                problems.append(f"{page}: image not loaded {image['src']}")
            alt = (image["alt"] or "").strip()
            if not alt or PATH_LIKE_ALT.match(alt):
                problems.append(
                    f"{page}: image {image['src'][:60]} has alt text {image['alt']!r}, not a description"
                )
    assert not problems, "\n".join(problems)
    if any(p.startswith("notebooks/") for p in visits):
        assert widget_images, (
            "no explorer view found on any chapter page: the widget alt check would be vacuous"
        )


def _blocking(violations: list[dict]) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}, {len(v['nodes'])}x): {v['help']}; e.g. {v['nodes'][0]['target']} "
        f"{v['nodes'][0]['html'][:120]}"
        for v in violations
        if v["impact"] in BLOCKING_IMPACTS
    ]


def test_no_serious_accessibility_violations(visits: dict) -> None:
    found = {page: _blocking(v["axe"]) for page, v in visits.items() if _blocking(v["axe"])}
    assert not found, "axe-core (WCAG 2.1 A/AA) critical or serious violations:\n" + json.dumps(
        found, indent=1
    )


def test_axe_reports_a_planted_violation(browser, served: str, site: dict, axe: str) -> None:
    blocked: list[str] = []
    context = offline_context(browser, served, blocked)
    page = context.new_page()
    try:
        page.goto(urljoin(served, site["pages"][0]), wait_until="load", timeout=PAGE_TIMEOUT_MS)
        page.evaluate("""() => {
          const img = document.createElement('img');
          img.src = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
          (document.querySelector('main') || document.body).appendChild(img);
          const button = document.createElement('button');
          (document.querySelector('main') || document.body).appendChild(button);
        }""")  # noqa: E501
        ids = {v["id"] for v in axe_violations(page, axe) if v["impact"] in BLOCKING_IMPACTS}
        assert {"image-alt", "button-name"} <= ids, (
            f"axe missed the planted image without alt and unnamed button: {ids}"
        )
    finally:
        context.close()


def test_math_is_typeset(visits: dict) -> None:
    problems = []
    for page, v in visits.items():
        if v["math_nodes"] and not v["mathjax_loaded"]:
            problems.append(f"{page}: {v['math_nodes']} math nodes but MathJax did not load")
        if v["math_typeset"] != v["math_nodes"]:
            problems.append(f"{page}: {v['math_typeset']} of {v['math_nodes']} math nodes typeset")
        if v["math_errors"]:
            problems.append(f"{page}: {v['math_errors']} MathJax error nodes")
        raw = RAW_TEX.search(v["prose"])
        if raw:
            problems.append(f"{page}: raw TeX left in the text: {raw.group(0)[:80]!r}")
    assert not problems, "\n".join(problems)
    assert any(v["math_nodes"] for v in visits.values()), (
        "no page has math: the check would be vacuous"
    )


def test_no_progress_bar_text(visits: dict) -> None:
    leaks = [
        page
        for page, v in visits.items()
        if v["progress_widgets"]
        or "FloatProgress" in v["body_text"]
        or "HBox(children=" in v["body_text"]
    ]
    assert not leaks, f"progress-bar widget text on {leaks}"


def test_saved_widget_views_render(visits: dict) -> None:
    broken = {
        page: f"{v['widgets_rendered']} of {v['widget_views']} rendered"
        for page, v in visits.items()
        if v["widgets_rendered"] < v["widget_views"]
    }
    assert not broken, broken


def test_kernel_free_widgets_change_the_view(visits: dict, site: dict) -> None:
    problems = []
    exercised = 0
    for page, v in visits.items():
        for control in v["controls"]:
            label = f"{page} control #{control['index']} ({control['kind']})"
            if not control["has_view"] or not control["initially_loaded"]:
                problems.append(f"{label}: no loaded image next to the control")
                continue
            for action in ("keyboard", "drag", "click"):
                if action in control:
                    exercised += 1
                    if not control[action]["changed"]:
                        problems.append(
                            f"{label}: {action} did not change the image "
                            f"(readout {control[action]['readout']})"
                        )
    assert not problems, "a control that moves but changes nothing:\n" + "\n".join(problems)
    chapters = [doc for doc in site["toc"] if doc.startswith("notebooks/")]
    if chapters:
        assert exercised, f"no kernel-free widget control found on any chapter page ({chapters})"


def test_screenshot_per_page(visits: dict) -> None:
    missing = [page for page, v in visits.items() if not Path(v["screenshot"]).is_file()]
    assert not missing


def test_sidebar_reaches_every_chapter(browser, served: str, site: dict) -> None:
    blocked: list[str] = []
    context = offline_context(browser, served, blocked)
    page = context.new_page()
    try:
        root = f"{site['toc'][0]}.html"
        targets = [doc for doc in site["toc"][1:]]
        unreached = []
        for doc in targets:
            page.goto(urljoin(served, root), wait_until="load")
            link = page.locator(f'nav.bd-docs-nav a[href$="{Path(doc).name}.html"]').first
            if link.count() == 0:
                unreached.append(f"{doc}: no link in the sidebar")
                continue
            link.click()
            page.wait_for_load_state("load")
            if not page.url.split("#")[0].endswith(f"{doc}.html"):
                unreached.append(f"{doc}: the link led to {page.url}")
        assert not unreached, unreached
        assert not blocked, blocked
    finally:
        context.close()


def test_search_finds_a_term(browser, served: str, site: dict) -> None:
    blocked: list[str] = []
    context = offline_context(browser, served, blocked)
    page = context.new_page()
    try:
        page.goto(urljoin(served, f"search.html?q={SEARCH_TERM}"), wait_until="load")
        results = page.locator("#search-results ul.search li")
        results.first.wait_for(state="attached", timeout=PAGE_TIMEOUT_MS)
        hrefs = [
            results.nth(i).locator("a").first.get_attribute("href") or ""
            for i in range(results.count())
        ]
        documents = {doc for doc in site["toc"]}
        linked = [
            h for h in hrefs if h.split("?")[0].split("#")[0].removesuffix(".html") in documents
        ]
        assert linked, f"search for {SEARCH_TERM!r} found {hrefs}, none a page of the book"
        assert not blocked, blocked
    finally:
        context.close()


def _chapter_pages(site: dict) -> list[str]:
    return [
        f"{doc}.html"
        for doc in site["toc"]
        if doc.startswith("notebooks/") and f"{doc}.html" in site["pages"]
    ]


def test_explorer_controls_work_from_the_keyboard(browser, served: str, site: dict) -> None:
    """Tab from the top of a chapter reaches a slider handle with a name; ArrowRight moves it."""
    blocked: list[str] = []
    context = offline_context(browser, served, blocked)
    page = context.new_page()
    try:
        reached = None
        for page_path in _chapter_pages(site):
            page.goto(urljoin(served, page_path), wait_until="load", timeout=PAGE_TIMEOUT_MS)
            page.evaluate(SETTLE_JS)
            if not page.locator(".widget-slider .noUi-handle").count():
                continue
            page.locator("body").focus()
            for _ in range(400):
                page.keyboard.press("Tab")
                focused = page.evaluate("""() => { const e = document.activeElement;
                  return e && e.getAttribute('role') === 'slider' ? {name: e.getAttribute('aria-label'),
                    now: e.getAttribute('aria-valuenow'), text: e.getAttribute('aria-valuetext')} : null; }""")
                if focused:
                    reached = (page_path, focused)
                    break
            if reached:
                break
        assert reached, "no slider handle reached with Tab on any chapter page"
        page_path, before = reached
        assert before["name"] and before["name"] != "value", (
            f"{page_path}: the focused slider has no name: {before}"
        )
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
        after = page.evaluate("""() => ({now: document.activeElement.getAttribute('aria-valuenow'),
                                          text: document.activeElement.getAttribute('aria-valuetext')})""")
        assert after["now"] != before["now"], (
            f"{page_path}: ArrowRight did not move the slider ({before} -> {after})"
        )
        assert after["text"] != before["text"], (
            f"{page_path}: the slider's spoken value did not follow ({before} -> {after})"
        )
        assert not blocked, blocked
    finally:
        context.close()


PLANT_TRANSPARENT_JS = """() => {
  const canvas = document.createElement('canvas');
  canvas.width = 120; canvas.height = 80;
  const draw = canvas.getContext('2d');
  draw.fillStyle = '#000'; draw.fillRect(50, 30, 20, 20);
  const img = document.createElement('img');
  img.id = 'gdsec-planted'; img.alt = 'planted transparent figure'; img.src = canvas.toDataURL('image/png');
  img.style.setProperty('background-color', 'transparent', 'important');
  (document.querySelector('main') || document.body).prepend(img);
  return new Promise((resolve) => { img.onload = () => resolve(true); });
}"""


def _margin_brightness(png: bytes, inset: float) -> float:
    """Median brightness (0-255) of a 3-pixel ring just inside the picture (``inset`` = padding + border).

    That ring is the figure's own margin: light for a figure drawn on white, the page colour for a
    transparent one.
    """
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    width, height = image.size
    low = int(round(inset)) + 3
    if width <= 2 * (low + 3) or height <= 2 * (low + 3):
        return 0.0
    pixels = image.load()
    ring = sorted(
        pixels[x, y]
        for x in range(low, width - low)
        for y in range(low, height - low)
        if x < low + 3 or y < low + 3 or x >= width - low - 3 or y >= height - low - 3
    )
    return float(ring[len(ring) // 2])


INSET_JS = "(e) => { const s = getComputedStyle(e); return parseFloat(s.paddingTop) + parseFloat(s.borderTopWidth); }"


def test_figures_are_readable_in_dark_mode(browser, served: str, site: dict) -> None:
    """In the theme's dark mode every visible figure and explorer view keeps a light backdrop."""
    shots = artifact_dir("browser-book-dark")
    blocked: list[str] = []
    context = offline_context(browser, served, blocked)
    context.add_init_script("localStorage.setItem('mode', 'dark')")
    page = context.new_page()
    problems, checked = [], 0
    try:
        # control: a transparent figure planted on a dark page must fail the brightness check
        page.goto(urljoin(served, site["pages"][0]), wait_until="load", timeout=PAGE_TIMEOUT_MS)
        page.evaluate(PLANT_TRANSPARENT_JS)
        planted_image = page.locator("#gdsec-planted")
        planted = _margin_brightness(planted_image.screenshot(), planted_image.evaluate(INSET_JS))
        assert planted < LIGHT_BACKDROP, (
            f"a transparent figure on the dark page measured {planted:.0f}: vacuous check"
        )
        for page_path in site["pages"]:
            page.goto(urljoin(served, page_path), wait_until="load", timeout=PAGE_TIMEOUT_MS)
            page.evaluate(SETTLE_JS)
            theme = page.evaluate("() => document.documentElement.dataset.theme")
            assert theme == "dark", (
                f"{page_path}: the theme did not switch to dark mode ({theme!r})"
            )
            images = page.locator("main img")
            for index in range(images.count()):
                image = images.nth(index)
                if not image.is_visible() or (image.bounding_box() or {"width": 0})["width"] < 40:
                    continue
                image.scroll_into_view_if_needed()
                png = image.screenshot()
                checked += 1
                brightness = _margin_brightness(png, image.evaluate(INSET_JS))
                if brightness < LIGHT_BACKDROP:
                    name = f"{page_path.replace('/', '__').removesuffix('.html')}-{index}.png"
                    (shots / name).write_bytes(png)
                    problems.append(
                        f"{page_path} image #{index}: margin brightness {brightness:.0f} < {LIGHT_BACKDROP} ({name})"
                    )
        assert checked, "no figure checked in dark mode: the check would be vacuous"
        assert not problems, "figures unreadable on the dark page:\n" + "\n".join(problems)
        assert not blocked, blocked
    finally:
        context.close()


def test_every_chapter_offers_its_notebook(site: dict, served: str) -> None:
    """The theme's download button on each chapter page links the chapter's .ipynb, which is served."""
    from urllib.request import urlopen

    chapters = _chapter_pages(site)
    assert chapters, "no chapter pages"
    problems = []
    for page_path in chapters:
        text = (site["html"] / page_path).read_text(errors="replace")
        tags = [
            tag for tag in re.findall(r"<a\b[^>]*>", text) if "btn-download-source-button" in tag
        ]
        links = [
            m.group(1) for tag in tags for m in [re.search(r'href="([^"]+\.ipynb)"', tag)] if m
        ]
        local = [link for link in links if not link.startswith(("http:", "https:"))]
        if not local:
            problems.append(f"{page_path}: no download button for the .ipynb")
            continue
        with urlopen(urljoin(urljoin(served, page_path), local[0]), timeout=30) as response:
            notebook = json.loads(response.read())
        if (
            Path(local[0]).stem != Path(page_path).stem
            or not notebook.get("cells")
            or notebook.get("nbformat") != 4
        ):
            problems.append(f"{page_path}: {local[0]} is not this chapter's notebook")
    assert not problems, problems
