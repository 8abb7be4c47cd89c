"""Shared fixtures: which backends can run here, training one backend, temp CSVs, and
hiding an optional library to simulate a machine without it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gdbench import implementations
from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, train_once

# jax-sharded needs two CPU devices, which JAX fixes when it starts: ask before any test
# starts it (JAX reads JAX_NUM_CPU_DEVICES then). The other JAX backends use the first.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "2")

# The implementation modules that import each optional library at the top.
MODULES_USING = {
    "torch": [
        "gdbench.implementations.torch_autograd",
        "gdbench.implementations.torch_manual",
        "gdbench.implementations.torch_tutorial",
        "gdbench.implementations.torch_common",
        "gdbench.implementations.torch_ddp",
    ],
    "jax": ["gdbench.implementations.jax_jit", "gdbench.implementations.jax_sharded"],
}


@pytest.fixture(scope="session")
def backend_status() -> dict[str, str | None]:
    """implementations.available(), computed once: None, or why the backend cannot run."""
    return implementations.available()


@pytest.fixture(scope="session")
def train_backend(
    backend_status: dict[str, str | None],
) -> Callable[[str, Problem], TrainResult]:
    """Train one backend on a Problem (prepare, run, result); skip it if it cannot run here."""

    def train(name: str, problem: Problem) -> TrainResult:
        why = backend_status[name]
        if why:
            pytest.skip(f"backend {name}: {why}")
        result, *_ = train_once(name, problem)
        return result

    return train


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write text to a CSV file in a fresh temporary directory and return its path."""

    def write(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def hide_library(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make ``import torch`` (or jax) fail, as on a machine without it.

    ``sys.modules[lib] = None`` makes the import raise ModuleNotFoundError; the backend
    modules that already imported it are dropped so the registry imports them afresh.
    monkeypatch puts every entry back after the test, so later tests see the real library.
    """

    def hide(library: str) -> None:
        monkeypatch.setitem(sys.modules, library, None)
        for module in MODULES_USING[library]:
            monkeypatch.delitem(sys.modules, module, raising=False)

    return hide
