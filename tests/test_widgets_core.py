"""The two faces of every explorer, and the environment detection behind them."""

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest

from gdsec import env
from gdsec.widgets import MAX_VIEWS, explorer
from gdsec.widgets.descent import learning_rate_explorer, optimizer_explorer


def _render(a, b="x"):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, a], [0, 1 if b == "x" else -1])
    return fig


@pytest.mark.integration
def test_precomputed_face_nests_stacks_and_links_every_control(monkeypatch):
    links = []
    real_jslink = widgets.jslink

    def recording_jslink(source, target):
        links.append((source, target))
        return real_jslink(source, target)

    monkeypatch.setattr(widgets, "jslink", recording_jslink)
    box = explorer(_render, {"a": [1, 2, 3], "b": ["x", "y"]}, live=False)
    slider, toggles, stack = box.children[:3]
    assert isinstance(slider, widgets.SelectionSlider) and isinstance(
        toggles, widgets.ToggleButtons
    )
    assert len(stack.children) == 3 and all(len(s.children) == 2 for s in stack.children)
    images = [bytes(img.value) for s in stack.children for img in s.children]
    assert len(set(images)) == 6 and all(v.startswith(b"\x89PNG") for v in images)
    assert links[0] == ((slider, "index"), (stack, "selected_index"))
    assert [target[0] for _, target in links[1:]] == list(stack.children)
    assert all(source == (toggles, "index") for source, _ in links[1:])


def test_live_face_redraws_in_the_kernel():
    box = explorer(_render, {"a": [1, 2]}, live=True, live_ranges={"a": (0.5, 5.0, 0.5)})
    slider, image = box.children[:2]
    assert isinstance(slider, widgets.FloatSlider)
    first = image.value
    slider.value = 4.0
    assert image.value != first


def test_explorer_rejects_bad_grids():
    with pytest.raises(ValueError, match="grid"):
        explorer(_render, {}, live=False)
    with pytest.raises(ValueError, match="grid"):
        explorer(_render, {"a": []}, live=False)
    with pytest.raises(ValueError, match="MAX_VIEWS"):
        explorer(_render, {"a": list(range(MAX_VIEWS + 1))}, live=False)
    with pytest.raises(ValueError, match="live_ranges"):
        explorer(_render, {"a": [1]}, live_ranges={"c": (0, 1, 0.1)})
    with pytest.raises(ValueError, match="render"):
        explorer("not callable", {"a": [1]})


def test_is_live_frontend(monkeypatch):
    monkeypatch.delenv("GDSEC_WIDGETS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not env.is_live_frontend()
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/01.ipynb")
    assert env.is_live_frontend()
    monkeypatch.setenv("CI", "true")
    assert not env.is_live_frontend()
    monkeypatch.setenv("GDSEC_WIDGETS", "live")
    assert env.is_live_frontend()
    assert list(env.progress(range(3))) == [0, 1, 2]


def test_configure_threads(monkeypatch):
    monkeypatch.setenv("GDSEC_TORCH_THREADS", "zero")
    with pytest.raises(ValueError, match="GDSEC_TORCH_THREADS"):
        env.configure_threads()
    monkeypatch.setenv("GDSEC_TORCH_THREADS", "1")
    assert env.configure_threads() == 1


@pytest.mark.integration
def test_chapter_explorers_build_both_faces():
    static = learning_rate_explorer(lrs=(0.05, 0.21), live=False)
    assert len(static.children[2].children) == 2
    live = learning_rate_explorer(live=True)
    slider = live.children[1]
    assert isinstance(slider, widgets.FloatSlider) and "learning rate" in slider.description
    box = optimizer_explorer(lrs=(0.01, 0.02), betas=(0.0,), steps=20, live=False)
    assert len(box.children[3].children) == 2 and len(box.children[3].children[0].children) == 1
