"""Explorers with two faces: live in a Jupyter kernel, precomputed (and still alive) in the static book.

Every chapter's explorer is built by :func:`explorer` from a ``render`` function that draws one
matplotlib figure for one setting of the controls:

* **live face** (JupyterLab, Binder): the controls call ``render`` in the kernel on every change;
  numeric controls may be continuous sliders (``live_ranges``).
* **precomputed face** (the rendered book, CI, any front end without a Jupyter server): ``render`` is
  called once per point of the small ``grid``; the figures sit in nested ``Stack`` widgets whose
  ``selected_index`` is ``jslink``-ed to the controls, so moving a slider flips views in the browser
  with no kernel at all.

``live=None`` picks the face with :func:`gdsec.env.is_live_frontend`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure

from gdsec.env import is_live_frontend
from gdsec.plotting import figure_png

__all__ = ["MAX_VIEWS", "explorer"]

#: Upper bound on precomputed views per explorer, to keep pages light and notebooks fast.
MAX_VIEWS = 48

Render = Callable[..., Figure]


def _label(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _control(name: str, values: Sequence[object], description: str) -> widgets.Widget:
    """A selection control over ``values``: a slider for numbers, toggle buttons for anything else."""
    options = [(_label(v), v) for v in values]
    style = {"description_width": "initial"}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return widgets.SelectionSlider(
            options=options, value=values[0], description=description, continuous_update=False, style=style
        )
    return widgets.ToggleButtons(options=options, value=values[0], description=description, style=style)


def _precomputed_views(render: Render, names: list[str], grid: Mapping[str, Sequence[object]]) -> list[widgets.Image]:
    return [
        widgets.Image(value=figure_png(render(**dict(zip(names, point, strict=True)))), format="png")
        for point in itertools.product(*(grid[n] for n in names))
    ]


def _nest(views: list[widgets.Widget], sizes: list[int]) -> widgets.Stack:
    """Arrange a flat row-major list of views into nested Stacks, one level per control."""
    if len(sizes) == 1:
        return widgets.Stack(children=views, selected_index=0)
    block = len(views) // sizes[0]
    return widgets.Stack(
        children=[_nest(views[i * block : (i + 1) * block], sizes[1:]) for i in range(sizes[0])], selected_index=0
    )


def _link_level(control: widgets.Widget, stacks: list[widgets.Stack], depth: int) -> list[widgets.Stack]:
    """jslink ``control.index`` to every Stack at nesting ``depth``; return the Stacks one level deeper."""
    for stack in stacks:
        widgets.jslink((control, "index"), (stack, "selected_index"))
    return [child for stack in stacks for child in stack.children if isinstance(child, widgets.Stack)]


def explorer(
    render: Render,
    grid: Mapping[str, Sequence[object]],
    *,
    live: bool | None = None,
    live_ranges: Mapping[str, tuple[float, float, float]] | None = None,
    descriptions: Mapping[str, str] | None = None,
    title: str = "",
) -> widgets.VBox:
    """Build an explorer whose controls are ``grid``'s keys and whose view is ``render(**setting)``.

    ``grid`` maps each keyword of ``render`` to the values the precomputed face offers (the first is
    the initial setting). ``live_ranges`` maps numeric controls to ``(min, max, step)`` for a
    continuous slider in the live face. The returned ``VBox`` has the controls first, then the view.
    """
    if not callable(render):
        raise ValueError("render must be a callable returning a matplotlib Figure")
    if not grid:
        raise ValueError("grid must map at least one control name to its values")
    names = list(grid)
    for name in names:
        if len(grid[name]) == 0:
            raise ValueError(f"grid[{name!r}] must list at least one value")
    live_ranges = dict(live_ranges or {})
    unknown = set(live_ranges) - set(names)
    if unknown:
        raise ValueError(f"live_ranges has keys {sorted(unknown)} that are not controls in grid {names}")
    descriptions = {n: (descriptions or {}).get(n, n) for n in names}
    live = is_live_frontend() if live is None else bool(live)
    header = [widgets.HTML(f"<b>{title}</b>")] if title else []

    if not live:
        sizes = [len(grid[n]) for n in names]
        total = math.prod(sizes)
        if total > MAX_VIEWS:
            raise ValueError(f"grid has {total} settings; at most MAX_VIEWS={MAX_VIEWS} can be precomputed")
        controls = [_control(n, list(grid[n]), descriptions[n]) for n in names]
        stack = _nest(_precomputed_views(render, names, grid), sizes)
        level = [stack]
        for depth, control in enumerate(controls):
            level = _link_level(control, level, depth)
        note = widgets.HTML(
            "<small>Precomputed views: the controls work without a kernel. "
            "Run the notebook in JupyterLab or on Binder to explore live.</small>"
        )
        return widgets.VBox([*header, *controls, stack, note])

    controls = []
    for name in names:
        if name in live_ranges:
            low, high, step = live_ranges[name]
            controls.append(
                widgets.FloatSlider(
                    value=float(grid[name][0]), min=low, max=high, step=step, description=descriptions[name],
                    continuous_update=False, readout_format=".3g", style={"description_width": "initial"},
                )
            )
        else:
            controls.append(_control(name, list(grid[name]), descriptions[name]))
    image = widgets.Image(format="png")

    def redraw(_change: object = None) -> None:
        image.value = figure_png(render(**{n: c.value for n, c in zip(names, controls, strict=True)}))

    for control in controls:
        control.observe(redraw, names="value")
    redraw()
    note = widgets.HTML("<small>Live: every change is computed in the kernel.</small>")
    return widgets.VBox([*header, *controls, image, note])
