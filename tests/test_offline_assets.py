"""The book's pages reference only local scripts, styles and fonts; the npm fetch degrades gracefully.

The built-book checks use the session's ``built_book``; the extension checks run a tiny Sphinx build
(seconds, no network) with ``npm`` replaced by a failing stub, and feed hand-made tarballs to the
extraction code.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import in_ci

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))

import gdsec_a11y  # noqa: E402  (the book's local Sphinx extensions)
import gdsec_buildinfo  # noqa: E402
import gdsec_latex  # noqa: E402
import gdsec_vendor  # noqa: E402

EXTERNAL = re.compile(
    r"""<(script|link|img|iframe|source|video|audio)\b[^>]*?\b(src|href)=["'](https?:)?//""",
    re.IGNORECASE,
)


def _pages(html: Path) -> list[Path]:
    return [
        p for p in sorted(html.rglob("*.html")) if not p.relative_to(html).parts[0].startswith("_")
    ]


def _fetched(built_book: dict) -> bool:
    return "could not fetch the offline assets" not in built_book["output"]


def _require_fetched(built_book: dict) -> None:
    if not _fetched(built_book):
        message = "the book build could not fetch the offline assets with npm (see its log)"
        if in_ci():
            pytest.fail(message + "; CI must build the offline book")
        pytest.skip(message)


# --- the built book ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_pages_load_nothing_from_other_hosts(built_book: dict) -> None:
    _require_fetched(built_book)
    offenders = {}
    for page in _pages(built_book["html"]):
        found = [m.group(0)[:160] for m in EXTERNAL.finditer(page.read_text(errors="replace"))]
        if found:
            offenders[page.name] = found
    assert not offenders, offenders


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_vendored_assets_are_in_the_site(built_book: dict) -> None:
    _require_fetched(built_book)
    vendor = built_book["html"] / "_static" / gdsec_vendor.STATIC_NAME
    for script in (*gdsec_vendor.WIDGET_SCRIPTS, gdsec_vendor.MATHJAX_SCRIPT):
        assert (built_book["html"] / "_static" / script).is_file(), script
    assert (vendor / "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff").is_file()
    bundle = (vendor / "html-manager" / "embed-amd.js").read_text(errors="replace")
    fonts = set(re.findall(r"[0-9a-f]{20}\.(?:woff2|woff|ttf|eot|svg)", bundle))
    assert fonts, "the html-manager bundle names no icon fonts: the font check would be vacuous"
    assert all((vendor / "html-manager" / font).is_file() for font in fonts), fonts
    pages_with_widgets = [
        p
        for p in _pages(built_book["html"])
        if "widget-state+json" in p.read_text(errors="replace")
    ]
    for page in pages_with_widgets:
        text = page.read_text(errors="replace")
        assert "gdsec-vendor/html-manager/embed-amd.js" in text and "cdn.jsdelivr" not in text, (
            page.name
        )


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_no_progress_bar_in_any_page(built_book: dict) -> None:
    leaks = [
        p.name
        for p in _pages(built_book["html"])
        if "FloatProgress" in p.read_text(errors="replace")
        or "HBox(children=" in p.read_text(errors="replace")
    ]
    assert not leaks, f"progress-bar widgets leaked into {leaks}"


def test_vendored_files_are_not_committed() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "node_modules/" in ignored and "book/_vendor/" in ignored
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "book/_vendor", "node_modules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert not tracked, tracked


# --- the extension ---------------------------------------------------------------------------------


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_extract_copies_only_the_needed_files(tmp_path: Path) -> None:
    package = next(p for p in gdsec_vendor.PACKAGES if p.name.endswith("html-manager"))
    tarball = _tarball(
        tmp_path / "hm.tgz",
        {
            "package/dist/embed-amd.js": b"define()",
            "package/dist/0123456789abcdef0123.woff2": b"font",
            "package/dist/embed-amd.js.map": b"{}",
            "package/dist/embed.js": b"x",
            "package/src/index.ts": b"ts",
            "package/LICENSE": b"BSD",
            "package/dist/../../escape.js": b"no",
        },
    )
    assert gdsec_vendor.extract(package, tarball, tmp_path / "out") == 3
    copied = sorted(
        p.relative_to(tmp_path / "out").as_posix()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    )
    assert copied == [
        "html-manager/0123456789abcdef0123.woff2",
        "html-manager/LICENSE",
        "html-manager/embed-amd.js",
    ]
    assert not (tmp_path / "escape.js").exists()


def _failing_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put an ``npm`` that always fails first on PATH; give the extension an empty cache."""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "npm").write_text("#!/bin/sh\necho 'npm: offline' >&2\nexit 1\n")
    (stub / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(gdsec_vendor.CACHE_ENV, str(tmp_path / "cache"))
    return stub


def test_tampered_tarball_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_npm(tmp_path, monkeypatch)
    package = gdsec_vendor.PACKAGES[0]
    cache = tmp_path / "cache"
    cache.mkdir()
    _tarball(
        cache / gdsec_vendor._tarball_name(package),
        {"package/require.js": b"alert('not requirejs')"},
    )
    with pytest.raises((RuntimeError, subprocess.CalledProcessError)):
        gdsec_vendor.fetch(package, cache)


def test_failed_fetch_keeps_cdn_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_npm(tmp_path, monkeypatch)
    config = SimpleNamespace(
        html_static_path=[],
        nb_ipywidgets_js={"https://cdn/x.js": {}},
        mathjax_path="https://cdn/m.js",
    )
    gdsec_vendor.use_local_assets(SimpleNamespace(confdir=str(tmp_path)), config)
    assert config.nb_ipywidgets_js == {"https://cdn/x.js": {}}
    assert config.mathjax_path == "https://cdn/m.js" and config.html_static_path == []


def _tiny_project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "conf.py").write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "book" / "_ext")!r})
        extensions = ["myst_parser", "gdsec_book"]
        myst_enable_extensions = ["dollarmath"]
    """)
    )
    (folder / "index.md").write_text("# Tiny\n\nThe rule $w \\leftarrow w - \\eta g$.\n")
    return folder


def test_build_without_npm_succeeds_with_cdn_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = _failing_npm(tmp_path, monkeypatch)
    project = _tiny_project(tmp_path / "project")
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-b", "html", str(project), str(project / "_build")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "could not fetch the offline assets" in process.stdout
    assert "WARNING" not in process.stdout + process.stderr
    page = (project / "_build" / "index.html").read_text()
    assert "cdn.jsdelivr.net/npm/mathjax@3" in page and "gdsec-vendor" not in page


# --- accessibility, build information and LaTeX settings ---------------------------------------------


def test_body_fixes_name_toggles_by_their_text_and_give_citations_list_items() -> None:
    body = (
        '<summary aria-label="Toggle hidden content"><p>Show code cell source</p></summary>'
        '<div role="list" class="citation-list"><div class="citation" id="id29" role="doc-biblioentry">x</div></div>'
    )
    fixed = gdsec_a11y.fix_body(body)
    assert "<summary><p>Show code cell source</p></summary>" in fixed
    assert (
        '<div class="citation" id="id29" role="listitem">' in fixed
        and "doc-biblioentry" not in fixed
    )
    assert gdsec_a11y.fix_body(fixed) == fixed


def test_theme_overrides_and_assets_exist() -> None:
    for name in ("theme-switcher.html", "search-button-field.html"):
        template = (gdsec_a11y.TEMPLATES / name).read_text()
        assert "aria-hidden" in template
    assert 'aria-label="' not in (gdsec_a11y.TEMPLATES / "search-button-field.html").read_text()
    assert "aria-label" in (gdsec_a11y.STATIC / gdsec_a11y.JS_FILE).read_text()
    assert 'data-theme="dark"' in (gdsec_a11y.STATIC / gdsec_a11y.CSS_FILE).read_text()


def test_build_info_names_python_torch_and_machine() -> None:
    import platform

    info = gdsec_buildinfo.build_info()
    assert info["gdsec_python"].endswith(platform.python_version())
    assert info["gdsec_torch"].split("+")[0].count(".") == 2
    assert int(info["gdsec_cores"]) >= 1 and info["gdsec_cpu"] and info["gdsec_memory"]
    config = SimpleNamespace(myst_substitutions={"gdsec_python": "kept"})
    gdsec_buildinfo._add_substitutions(None, config)
    assert (
        config.myst_substitutions["gdsec_python"] == "kept"
        and "gdsec_torch" in config.myst_substitutions
    )


def test_latex_settings_avoid_xindy_and_ship_bbm() -> None:
    config = SimpleNamespace(
        latex_additional_files=[], latex_use_xindy=True, latex_elements={"preamble": "% x"}
    )
    gdsec_latex._configure(None, config)
    assert config.latex_use_xindy is False
    assert [Path(f).name for f in config.latex_additional_files] == ["bbm.sty"]
    assert all(Path(f).is_file() for f in config.latex_additional_files)
    assert (
        config.latex_elements["preamble"].startswith("% x")
        and "\\renewcommand{\\*}" in config.latex_elements["preamble"]
    )
