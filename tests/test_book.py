"""The book builds from a clean copy with zero warnings; a failing notebook fails the build; the PDF.

The PDF is built with Jupyter Book's LaTeX builder from the same scratch copy as the HTML book, right
after it, so the notebooks come from the execution cache; it is then checked with poppler-utils
(``pdfinfo``, ``pdftotext``, ``pdfimages``) and copied into ``_build/html/``, where the intro page
links it.
"""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
import time

import pytest
from browser_support import artifact_dir, missing

from helpers import ROOT, build_book, build_pdf

PDF_NAME = "gradient-descent-security.pdf"
TEX_TOOLS = ("latexmk", "xelatex", "makeindex", "pdfinfo", "pdftotext", "pdfimages")
#: Share of the chapters' glued numbers and of the bibliography's titles that must be found in the PDF text.
MIN_FOUND = 0.9

SPHINX_WARNING = re.compile(r"(WARNING|ERROR|CRITICAL): ")


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_book_builds_with_zero_warnings(built_book):
    output = built_book["output"]
    assert built_book["returncode"] == 0, f"jupyter-book build failed:\n{output[-8000:]}"
    warnings = [line for line in output.splitlines() if SPHINX_WARNING.search(line)]
    assert not warnings, "the build printed warnings:\n" + "\n".join(warnings[:30])
    assert "build succeeded" in output
    reports = built_book["html"] / "reports"
    assert not reports.exists() or not any(reports.iterdir()), (
        "execution reports mean a notebook failed"
    )


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_every_chapter_page_was_executed(built_book):
    html = built_book["html"]
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = html / "notebooks" / f"{notebook.stem}.html"
        assert page.exists(), f"{page} was not built"
        text = page.read_text()
        assert "cell_output" in text, f"{notebook.name} has no outputs on its page"
        assert "FloatProgress" not in text and "HBox(children" not in text, (
            f"progress bar text leaked into {page.name}"
        )
        assert "Traceback" not in text, f"{page.name} shows a traceback"


def _broken_book(root):
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    shutil.copytree(ROOT / "book", root / "book")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/setup\nchapters:\n  - file: notebooks/01_broken\n"
    )
    notebook = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Broken on purpose"]},
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": ["raise RuntimeError('this notebook is broken on purpose')"],
            },
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / "notebooks" / "01_broken.ipynb").write_text(json.dumps(notebook))
    return root


@pytest.mark.slow
def test_a_failing_notebook_fails_the_build(tmp_path):
    root = _broken_book(tmp_path / "broken")
    done = build_book(root, timeout=600)
    assert done.returncode != 0, "a notebook that raises must fail the book build"
    assert "broken on purpose" in done.stdout + done.stderr


def _normalise(text: str) -> str:
    """Lower case, one space between words, typographic quotes and dashes as ASCII, no hyphen breaks."""
    text = (
        text.replace("\u2019", "'")
        .replace("\u2018", "'")
        .replace("\u201c", '"')
        .replace("\u201d", '"')
    )
    text = (
        text.replace("\u2013", "-")
        .replace("\u2014", "-")
        .replace("\u2212", "-")
        .replace("\ufb01", "fi")
    )
    text = re.sub(r"-\n\s*(?=[a-z])", "", text).replace("--", "-")
    return " ".join(text.lower().split())


def _poppler(tool: str, *args: str) -> str:
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


@pytest.fixture(scope="module")
def built_pdf(built_book: dict) -> dict:
    """The PDF built from the HTML build's copy (its execution cache), checked tools first."""
    absent = [tool for tool in TEX_TOOLS if shutil.which(tool) is None]
    if absent:
        missing(f"the PDF build needs {absent} (TeX Live and poppler-utils; .ci/run installs them)")
    if built_book["returncode"] != 0:
        pytest.fail("the HTML build failed, so the PDF was not attempted")
    start = time.perf_counter()
    process = build_pdf(built_book["root"])
    seconds = time.perf_counter() - start
    pdf = built_book["root"] / "_build" / "latex" / PDF_NAME
    output = process.stdout + process.stderr
    if process.returncode == 0 and pdf.is_file():
        shutil.copy(pdf, built_book["html"] / PDF_NAME)
    result = {"pdf": pdf, "returncode": process.returncode, "output": output, "seconds": seconds}
    if pdf.is_file():
        result["text"] = _poppler("pdftotext", "-layout", str(pdf), "-")
        result["info"] = _poppler("pdfinfo", str(pdf))
        listing = _poppler("pdfimages", "-list", str(pdf)).splitlines()[2:]
        result["images"] = [
            line for line in listing if len(line.split()) > 2 and line.split()[2] == "image"
        ]
        pages = re.search(r"^Pages:\s+(\d+)", result["info"], re.MULTILINE)
        result["pages"] = int(pages.group(1)) if pages else 0
        report = {
            "seconds": round(seconds, 1),
            "pages": result["pages"],
            "images": len(result["images"]),
            "bytes": pdf.stat().st_size,
        }
        (artifact_dir("pdf") / "report.json").write_text(json.dumps(report, indent=1))
        print(f"\nPDF build: {report}")
    return result


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_pdf_builds_from_the_execution_cache(built_pdf: dict) -> None:
    output = built_pdf["output"]
    assert built_pdf["returncode"] == 0, f"the PDF build failed:\n{output[-6000:]}"
    assert built_pdf["pdf"].is_file(), f"no {PDF_NAME} after the build:\n{output[-3000:]}"
    warnings = [line for line in output.splitlines() if SPHINX_WARNING.search(line)]
    assert not warnings, "the PDF build printed warnings:\n" + "\n".join(warnings[:30])
    assert "Executing notebook" not in output, (
        "the PDF build executed notebooks again instead of using the cache"
    )
    assert built_pdf["pages"] >= 50, built_pdf["info"]


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_pdf_has_every_chapter_with_figures_numbers_and_citations(
    built_pdf: dict, built_book: dict
) -> None:
    if "text" not in built_pdf:
        pytest.fail(f"no PDF to check:\n{built_pdf['output'][-3000:]}")
    text = _normalise(built_pdf["text"])
    problems = []
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        heading = next(
            line
            for cell in cells
            if cell["cell_type"] == "markdown"
            for line in "".join(cell["source"]).splitlines()
            if line.startswith("# ")
        )
        title = re.sub(r"^#\s+\d+\.\s*", "", heading).strip()
        if _normalise(title) not in text:
            problems.append(f"chapter title {title!r} not in the PDF")
    # glued numbers: what the HTML chapter pages pasted must be in the PDF too
    pasted = []
    for page in sorted((built_book["html"] / "notebooks").glob("[0-9][0-9]_*.html")):
        pasted += [
            html_lib.unescape(v)
            for v in re.findall(r'<span class="pasted-text">([^<]+)</span>', page.read_text())
        ]
    assert len(pasted) >= 50, (
        f"only {len(pasted)} glued numbers in the HTML chapters: the check would be weak"
    )
    found = sum(_normalise(value) in text for value in pasted)
    if found < MIN_FOUND * len(pasted):
        problems.append(
            f"only {found} of {len(pasted)} glued numbers of the HTML chapters are in the PDF"
        )
    # citations: the bibliography lists every entry of references.bib (``:all:``)
    titles = [
        re.sub(r"[{}]", "", t)
        for t in re.findall(
            r"^\s*title\s*=\s*[{\"](.+?)[}\"],?\s*$",
            (ROOT / "book" / "references.bib").read_text(),
            re.MULTILINE,
        )
    ]
    assert len(titles) >= 10, titles
    cited = sum(_normalise(t)[:40] in text for t in titles)
    if cited < MIN_FOUND * len(titles):
        problems.append(f"only {cited} of {len(titles)} bibliography titles are in the PDF")
    # figures: every figure the HTML chapters show (outside the explorers) is an image in the PDF
    figures = set()
    for page in sorted((built_book["html"] / "notebooks").glob("[0-9][0-9]_*.html")):
        figures |= set(re.findall(r'<img[^>]*src="\.\./(_images/[^"]+\.png)"', page.read_text()))
    assert len(figures) >= 10, (
        f"only {len(figures)} figures in the HTML chapters: the check would be weak"
    )
    if len(built_pdf["images"]) < len(figures):
        problems.append(
            f"{len(built_pdf['images'])} images in the PDF for {len(figures)} figures in the HTML chapters"
        )
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_html_book_links_the_pdf(built_pdf: dict, built_book: dict) -> None:
    html = built_book["html"]
    intro = (html / "book" / "intro.html").read_text()
    links = re.findall(r'href="([^"]*' + re.escape(PDF_NAME) + r')"', intro)
    assert links, "the intro page has no link to the PDF"
    target = (html / "book" / links[0]).resolve()
    assert target == (html / PDF_NAME).resolve() and target.is_file(), (
        f"{links[0]} does not lead to the copied PDF"
    )
