"""The chapter 1 explorer: learning rate against the bowl's steep curvature."""

from __future__ import annotations

import ipywidgets as widgets
import pytest

from gdsec.widgets.descent import learning_rate_explorer


@pytest.mark.integration
def test_curvature_control_changes_what_the_same_learning_rate_does():
    box = learning_rate_explorer(lrs=(0.05, 0.19), curvatures=(5.0, 20.0), steps=20, live=False)
    lr_control, curvature_control, stack = box.children[1], box.children[2], box.children[3]
    assert (
        "learning rate" in lr_control.description and "curvature" in curvature_control.description
    )
    views = [[view.tooltip for view in inner.children] for inner in stack.children]
    assert len(views) == 2 and all(len(row) == 2 for row in views)
    # lr 0.19: below 2/5 = 0.4 it converges, above 2/20 = 0.1 it diverges
    assert "diverged" not in views[1][0] and "2/L = 0.4" in views[1][0]
    assert "diverged" in views[1][1] and "2/L = 0.1" in views[1][1]
    assert all("diverged" not in tip for tip in views[0])


@pytest.mark.integration
def test_live_face_has_two_sliders_and_bad_curvatures_are_refused():
    live = learning_rate_explorer(curvatures=(10.0,), live=True)
    assert [type(c) for c in live.children[1:3]] == [widgets.FloatSlider, widgets.FloatSlider]
    with pytest.raises(ValueError, match="curvatures"):
        learning_rate_explorer(curvatures=(0.0,), live=False)
    with pytest.raises(ValueError, match="curvatures"):
        learning_rate_explorer(curvatures=(), live=False)
    with pytest.raises(ValueError, match="bowl"):
        learning_rate_explorer(curvatures=(5.0,), surface_name="rosenbrock", live=False)
