"""jax's timed ``run`` does nothing a user's own loop would not: no copy of the initial
weights, no transfer from the host, no donation that would force one on the next call.

Checked by what ``run`` hands the compiled calls and by the device's buffers, not by
timing: jax-scan once copied W0 and b0 on the device before every call so that the
compiled scan could donate them, 80% of a crops run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gdbench.data.workloads import WORKLOADS
from gdbench.implementations.base import Prepared, prepare

jax = pytest.importorskip("jax")


class Recording:
    """A compiled call that records the arguments of every call, then makes it."""

    def __init__(self, compiled: Callable[..., Any], calls: list[tuple[Any, ...]]) -> None:
        self.compiled, self.calls = compiled, calls

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.compiled(*args)


@pytest.fixture(params=["jax", "jax-scan"])
def prepared(request: pytest.FixtureRequest, backend_status: dict[str, str | None]) -> Prepared:
    """jax or jax-scan, prepared on crops (skipped where the backend cannot run)."""
    name = request.param
    if backend_status[name]:
        pytest.skip(f"backend {name}: {backend_status[name]}")
    return prepare(name, WORKLOADS["crops"].build())


def test_run_hands_the_compiled_calls_the_prepared_arrays_themselves(
    prepared: Prepared
) -> None:
    state = prepared.state
    calls: list[tuple[Any, ...]] = []
    state.compiled = {key: Recording(fn, calls) for key, fn in state.compiled.items()}

    # Any transfer between host and device inside run raises: the data, the weights and
    # the batch indices are all on the device since prepare.
    with jax.transfer_guard("disallow"):
        prepared.run()
        prepared.run()

    steps = len(state.problem.plan)
    per_step = prepared.backend.name == "jax"
    assert len(calls) == (2 * steps if per_step else 2)  # per step, or one scan
    starts = [calls[0], calls[len(calls) // 2]]  # each run's first call
    for params, X, Y, *_ in starts:
        # The same device arrays, not copies: each run starts from W0 and b0 as prepared.
        assert params[0] is state.W0_dev and params[1] is state.b0_dev
        assert X is state.X and Y is state.Y
    # Nothing was donated, so W0 and b0 are still there for the next run.
    assert not state.W0_dev.is_deleted() and not state.b0_dev.is_deleted()


def test_run_leaves_no_device_buffers_behind_but_its_result(prepared: Prepared) -> None:
    prepared.run()  # the first run's result takes its place among the live buffers

    def live() -> set[int]:
        return {id(a) for a in jax.live_arrays()}

    before = live()
    old = {id(p) for p in prepared.state.params}
    prepared.run()
    new = {id(p) for p in prepared.state.params}
    # The previous result is replaced by the new one, W and b; nothing else stays.
    assert live() == (before - old) | new
    assert len(new) == 2
