"""One fake clock for the tests that time constructed code: time moves only when the code
under test says it worked (or, with ``tick``, by that much at every reading, so that an
empty loop is not free)."""

from __future__ import annotations

from collections.abc import Callable


class FakeClock:
    def __init__(self, start: float = 0.0, tick: float = 0.0) -> None:
        self.now = start
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def work(self, seconds: float) -> Callable[[], None]:
        """A function whose every call takes ``seconds`` on this clock."""
        def fn() -> None:
            self.advance(seconds)
        return fn
