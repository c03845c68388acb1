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

Every view carries a text alternative (the ``<img>`` element's ``title``, which the book's extension
also copies to ``alt``): ``describe(**setting)`` when given, else the setting and the figure's own
titles and axis labels (:func:`describe_figure`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure
from traitlets import Unicode

from gdsec.env import is_live_frontend
from gdsec.plotting import figure_png

__all__ = ["MAX_VIEWS", "DescribedImage", "describe_figure", "explorer"]

#: Upper bound on precomputed views per explorer, to keep pages light and notebooks fast.
MAX_VIEWS = 48

Render = Callable[..., Figure]
Describe = Callable[..., str]


class DescribedImage(widgets.Image):
    """A PNG view whose ``tooltip`` is its text alternative (rendered as the ``<img>``'s ``title``).

    ipywidgets' front end sets ``title`` only for widgets whose ``description`` is empty, and
    ``Image`` has no ``description``; this subclass syncs an empty one so the tooltip reaches the DOM.
    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """

    description = Unicode("", help="Always empty: lets the front end render the tooltip.").tag(
        sync=True
    )


_TEX_COMMAND = re.compile(r"\\([A-Za-z]+)")


def _plain(text: str) -> str:
    """Figure text without mathtext markup (``$w_2$`` -> ``w_2``, ``$\\varepsilon$`` -> ``varepsilon``)."""
    return " ".join(_TEX_COMMAND.sub(r"\1", text.replace("$", "")).split())


def _texts(fig: Figure) -> list[str]:
    """The figure's suptitle, then each panel's title and axis labels, as short phrases."""
    texts = []
    if fig.get_suptitle().strip():
        texts.append(_plain(fig.get_suptitle()))
    for number, ax in enumerate(fig.axes, start=1):
        title = _plain(" ".join((ax.get_title("left"), ax.get_title(), ax.get_title("right"))))
        x_label, y_label = _plain(ax.get_xlabel()), _plain(ax.get_ylabel())
        axes = f"{y_label} against {x_label}" if x_label and y_label else (x_label or y_label)
        parts = [p for p in (title, axes) if p]
        if parts:
            texts.append(
                f"Panel {number}: " + ", ".join(parts) if len(fig.axes) > 1 else ", ".join(parts)
            )
    return texts


def describe_figure(
    fig: Figure, setting: Mapping[str, object] | None = None, *, title: str = ""
) -> str:
    """A text alternative for ``fig``: the explorer title, the setting shown, the figure's titles and labels.

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    head = title.strip() or "Figure"
    shown = ", ".join(f"{name} = {_label(value)}" for name, value in (setting or {}).items())
    sentences = [f"{head}, showing {shown}" if shown else head, *_texts(fig)]
    return ". ".join(s.rstrip(".") for s in sentences if s) + "."


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
            options=options,
            value=values[0],
            description=description,
            continuous_update=False,
            style=style,
        )
    return widgets.ToggleButtons(
        options=options, value=values[0], description=description, style=style
    )


def _view(
    render: Render,
    setting: dict[str, object],
    describe: Describe | None,
    labels: dict[str, str],
    title: str,
) -> tuple[bytes, str]:
    """Render one setting: its PNG bytes and its text alternative."""
    fig = render(**setting)
    if describe is not None:
        alt = str(describe(**setting)).strip()
        if not alt:
            raise ValueError(
                f"describe returned an empty text alternative for the setting {setting}"
            )
    else:
        alt = describe_figure(fig, {labels[n]: v for n, v in setting.items()}, title=title)
    return figure_png(fig), alt


def _precomputed_views(
    render: Render,
    names: list[str],
    grid: Mapping[str, Sequence[object]],
    describe: Describe | None,
    labels: dict[str, str],
    title: str,
) -> list[DescribedImage]:
    views = []
    for point in itertools.product(*(grid[n] for n in names)):
        png, alt = _view(render, dict(zip(names, point, strict=True)), describe, labels, title)
        views.append(DescribedImage(value=png, format="png", tooltip=alt))
    return views


def _nest(views: list[widgets.Widget], sizes: list[int]) -> widgets.Stack:
    """Arrange a flat row-major list of views into nested Stacks, one level per control."""
    if len(sizes) == 1:
        return widgets.Stack(children=views, selected_index=0)
    block = len(views) // sizes[0]
    return widgets.Stack(
        children=[_nest(views[i * block : (i + 1) * block], sizes[1:]) for i in range(sizes[0])],
        selected_index=0,
    )


def _link_level(
    control: widgets.Widget, stacks: list[widgets.Stack], depth: int
) -> list[widgets.Stack]:
    """jslink ``control.index`` to every Stack at nesting ``depth``; return the Stacks one level deeper."""
    for stack in stacks:
        widgets.jslink((control, "index"), (stack, "selected_index"))
    return [
        child for stack in stacks for child in stack.children if isinstance(child, widgets.Stack)
    ]


def explorer(
    render: Render,
    grid: Mapping[str, Sequence[object]],
    *,
    live: bool | None = None,
    live_ranges: Mapping[str, tuple[float, float, float]] | None = None,
    descriptions: Mapping[str, str] | None = None,
    title: str = "",
    describe: Describe | None = None,
) -> widgets.VBox:
    """Build an explorer whose controls are ``grid``'s keys and whose view is ``render(**setting)``.

    ``grid`` maps each keyword of ``render`` to the values the precomputed face offers (the first is
    the initial setting). ``live_ranges`` maps numeric controls to ``(min, max, step)`` for a
    continuous slider in the live face. ``describe(**setting)`` returns the text alternative of a
    view (default: :func:`describe_figure`). The returned ``VBox`` has the controls first, then the view.

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    if not callable(render):
        raise ValueError("render must be a callable returning a matplotlib Figure")
    if describe is not None and not callable(describe):
        raise ValueError(
            "describe must be None or a callable returning the text alternative of a view"
        )
    if not grid:
        raise ValueError("grid must map at least one control name to its values")
    names = list(grid)
    for name in names:
        if len(grid[name]) == 0:
            raise ValueError(f"grid[{name!r}] must list at least one value")
    live_ranges = dict(live_ranges or {})
    unknown = set(live_ranges) - set(names)
    if unknown:
        raise ValueError(
            f"live_ranges has keys {sorted(unknown)} that are not controls in grid {names}"
        )
    descriptions = {n: (descriptions or {}).get(n, n) for n in names}
    live = is_live_frontend() if live is None else bool(live)
    header = [widgets.HTML(f"<b>{title}</b>")] if title else []

    if not live:
        sizes = [len(grid[n]) for n in names]
        total = math.prod(sizes)
        if total > MAX_VIEWS:
            raise ValueError(
                f"grid has {total} settings; at most MAX_VIEWS={MAX_VIEWS} can be precomputed"
            )
        controls = [_control(n, list(grid[n]), descriptions[n]) for n in names]
        stack = _nest(_precomputed_views(render, names, grid, describe, descriptions, title), sizes)
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
                    value=float(grid[name][0]),
                    min=low,
                    max=high,
                    step=step,
                    description=descriptions[name],
                    continuous_update=False,
                    readout_format=".3g",
                    style={"description_width": "initial"},
                )
            )
        else:
            controls.append(_control(name, list(grid[name]), descriptions[name]))
    image = DescribedImage(format="png")

    def redraw(_change: object = None) -> None:
        setting = {n: c.value for n, c in zip(names, controls, strict=True)}
        image.value, image.tooltip = _view(render, setting, describe, descriptions, title)

    for control in controls:
        control.observe(redraw, names="value")
    redraw()
    note = widgets.HTML("<small>Live: every change is computed in the kernel.</small>")
    return widgets.VBox([*header, *controls, image, note])
