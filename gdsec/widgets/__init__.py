"""Explorer factories, one per chapter, all built on :func:`gdsec.widgets.core.explorer`.

``core`` holds the two-faced mechanism (live in a kernel, precomputed in the static book); each
topic module (``descent``, ...) holds the factories its chapter displays.
"""

from gdsec.widgets.core import MAX_VIEWS, explorer

__all__ = ["MAX_VIEWS", "explorer"]
