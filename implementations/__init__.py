"""The registry of backends: ``get(name)`` and ``available() -> {name: None or why not}``.

Each backend declares what it requires, as a line of :data:`_REGISTRY`: the libraries it
imports and the extra that installs them. Its module is imported only when asked for, so
a missing optional library (torch, jax) makes that backend unavailable with a reason
instead of a crash. A module may also say why it cannot run here (no CUDA device) through
a function ``unavailable(name) -> str | None``.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from gdbench.data.errors import InputError
from gdbench.implementations.base import Backend


@dataclass(frozen=True)
class Spec:
    """Where a backend lives and what it needs before its module can be imported."""

    module: str
    factory: str  # a class or a function of no arguments that returns the backend
    requires: tuple[str, ...] = ()  # importable names
    extra: str | None = None  # the pip extra that installs them
    # Timed by default (gdbench run, ab and the suite without --backends). The
    # data-parallel backends are not: their ranks take every core of the machine and
    # answer a question of their own, so they run when named.
    default: bool = True


_TORCH, _JAX = ("torch",), ("jax", "jaxlib")
_REGISTRY: dict[str, Spec] = {
    "numpy": Spec("gdbench.implementations.numpy_manual", "NumpyManual"),
    "torch-cpu": Spec("gdbench.implementations.torch_autograd", "cpu", _TORCH, "torch"),
    "torch-cuda": Spec("gdbench.implementations.torch_autograd", "cuda", _TORCH, "cuda"),
    "torch-manual": Spec("gdbench.implementations.torch_manual", "TorchManual", _TORCH, "torch"),
    "torch-tutorial": Spec("gdbench.implementations.torch_tutorial", "TorchTutorial", _TORCH,
                           "torch"),
    "torch-compile": Spec("gdbench.implementations.torch_compile", "cpu", _TORCH, "torch"),
    "torch-compile-cuda": Spec("gdbench.implementations.torch_compile", "cuda", _TORCH, "cuda"),
    "torch-cuda-graph": Spec("gdbench.implementations.torch_cuda_graph", "TorchCudaGraph",
                             _TORCH, "cuda"),
    "torch-ddp": Spec("gdbench.implementations.torch_ddp", "cpu", _TORCH, "torch",
                      default=False),
    "torch-ddp-cuda": Spec("gdbench.implementations.torch_ddp", "cuda", _TORCH, "cuda",
                           default=False),
    "jax": Spec("gdbench.implementations.jax_jit", "JaxJit", _JAX, "jax"),
    "jax-scan": Spec("gdbench.implementations.jax_jit", "JaxScan", _JAX, "jax"),
    "jax-sharded": Spec("gdbench.implementations.jax_sharded", "JaxSharded", _JAX, "jax",
                        default=False),
}

REFERENCE = "numpy"


class BackendUnavailable(InputError):
    """The backend is known but cannot run here; the message says why and how to fix it."""


def names() -> list[str]:
    """Every known backend name, in registry order."""
    return list(_REGISTRY)


def default_names() -> list[str]:
    """The backends timed when none are named, in registry order (every backend but the
    data-parallel ones, which run when named)."""
    return [name for name, spec in _REGISTRY.items() if spec.default]


def _spec(name: str) -> Spec:
    if name not in _REGISTRY:
        known = ", ".join(_REGISTRY)
        raise InputError(f"unknown backend {name!r}; the known backends are: {known}")
    return _REGISTRY[name]


def why_unavailable(name: str) -> str | None:
    """None when the backend can run here, else why not (with the fix where there is one)."""
    spec = _spec(name)
    missing = [lib for lib in spec.requires if importlib.util.find_spec(lib) is None]
    if missing:
        return f"{missing[0]} is not installed; install it with pip install 'gdbench[{spec.extra}]'"
    module = importlib.import_module(spec.module)
    check = getattr(module, "unavailable", None)
    return check(name) if check is not None else None


def get(name: str) -> Backend:
    """A fresh backend instance; raises InputError (unknown) or BackendUnavailable."""
    why = why_unavailable(name)
    if why:
        raise BackendUnavailable(f"backend {name}: {why}")
    spec = _REGISTRY[name]
    factory = getattr(importlib.import_module(spec.module), spec.factory)
    backend: Backend = factory()
    return backend


def available() -> dict[str, str | None]:
    """Every known backend mapped to None when it can run here, else the reason it cannot."""
    return {name: why_unavailable(name) for name in _REGISTRY}
