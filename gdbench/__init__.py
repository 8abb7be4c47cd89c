"""gdbench: one linear-regression model trained the same way by several backends, timed."""

__version__ = "0.1.0"
