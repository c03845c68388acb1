"""Gradient Descent Security: the tested package behind the executable course.

Modules: ``data``, ``models``, ``train``, ``optim``, ``landscape``, ``plotting``, ``widgets``,
``env`` and ``validation``; later chapters add ``attacks``, ``poisoning``, ``aggregation``,
``leakage`` and ``audit``. Import what you need, e.g. ``from gdsec import data, train``.
"""

__version__ = "0.1.0"

from gdsec.env import configure_threads as _configure_threads

_configure_threads()
