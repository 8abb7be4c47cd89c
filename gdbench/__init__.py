"""gdbench: one linear-regression model trained the same way by several backends, timed."""

import os as _os

__version__ = "0.1.0"

# An install maps the repository's data/, implementations/ and benches/ folders to
# gdbench.data, gdbench.implementations and gdbench.benches (pyproject's package-dir).
# A bare source checkout on PYTHONPATH (a GPU box without pip, or each side of
# ``gdbench ab``) has no such mapping, so the checkout's root joins this package's path.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "data")) and all(
        _os.path.isfile(_os.path.join(_root, *parts)) for parts in (
            ("pyproject.toml",), ("data", "loader.py"), ("implementations", "base.py"))):
    __path__.append(_root)
