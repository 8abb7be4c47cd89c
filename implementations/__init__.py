"""The registry of backends: ``get(name)`` and ``available() -> {name: None or why not}``.

Each backend lives in its own module, imported only when asked for, so a missing optional
library (torch, jax) makes that backend unavailable with a reason instead of a crash.
"""

from __future__ import annotations

import importlib
from typing import Any

from gdbench.data.errors import InputError

# name -> (module, factory attribute, extra that installs its library)
_REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "numpy": ("gdbench.implementations.numpy_manual", "NumpyManual", None),
    "torch-cpu": ("gdbench.implementations.torch_autograd", "cpu", "torch"),
    "torch-cuda": ("gdbench.implementations.torch_autograd", "cuda", "torch"),
    "torch-manual": ("gdbench.implementations.torch_manual", "TorchManual", "torch"),
    "torch-tutorial": ("gdbench.implementations.torch_tutorial", "TorchTutorial", "torch"),
    "jax": ("gdbench.implementations.jax_jit", "JaxJit", "jax"),
    "jax-scan": ("gdbench.implementations.jax_jit", "JaxScan", "jax"),
}

REFERENCE = "numpy"


class BackendUnavailable(InputError):
    """The backend is known but cannot run here; the message says why and how to fix it."""


def names() -> list[str]:
    """Every known backend name, in registry order."""
    return list(_REGISTRY)


def _load(name: str) -> Any:
    if name not in _REGISTRY:
        known = ", ".join(_REGISTRY)
        raise InputError(f"unknown backend {name!r}; the known backends are: {known}")
    module_name, attr, extra = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        hint = f"pip install 'gdbench[{extra}]'" if extra else "reinstall gdbench"
        raise BackendUnavailable(
            f"backend {name}: {missing} is not installed; install it with {hint}"
        ) from None
    why = getattr(module, "unavailable", lambda _name: None)(name)
    if why:
        raise BackendUnavailable(f"backend {name}: {why}")
    return getattr(module, attr)


def get(name: str) -> Any:
    """A fresh backend instance; raises InputError (unknown) or BackendUnavailable."""
    factory = _load(name)
    return factory() if callable(factory) else factory


def available() -> dict[str, str | None]:
    """Every known backend mapped to None when it can run here, else the reason it cannot."""
    status: dict[str, str | None] = {}
    for name in _REGISTRY:
        try:
            _load(name)
        except BackendUnavailable as exc:
            status[name] = str(exc).split(": ", 1)[1]
        else:
            status[name] = None
    return status
