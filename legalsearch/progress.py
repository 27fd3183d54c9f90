"""Progress of long work where no terminal shows bars (a log file, a pipe, cron): plain lines, one every
`every_seconds` or every `every_fraction` of a stage, with the stage, done/total, rate and time left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def duration(seconds: float) -> str:
    """ "45 s", "3 min 20 s", "2 h 05 min" """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class _Stage:
    started: float
    printed_at: float
    printed_fraction: float = -1.0
    finished: bool = False


@dataclass
class PlainProgress:
    """A `(stage, done, total)` callback that writes lines such as
    `12:01:02 Embedding chunks: 1,234/5,000 (25%), 12.3/s, about 5 min 06 s left`."""

    write: Callable[[str], None]
    labels: dict[str, str] = field(default_factory=dict)
    every_seconds: float = 10.0
    every_fraction: float = 0.1
    quiet_seconds: float = 2.0  # a stage done sooner prints nothing: short runs (and their errors) stay one line
    clock: Callable[[], float] = time.monotonic
    _stages: dict[str, _Stage] = field(default_factory=dict)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        state = self._stages.get(stage)
        if state is None:
            state = self._stages[stage] = _Stage(started=now, printed_at=now)
        if state.finished or not total or now - state.started < self.quiet_seconds:
            return
        fraction = done / total if total else 1.0
        if (
            done >= total
            or now - state.printed_at >= self.every_seconds
            or (fraction - state.printed_fraction >= self.every_fraction)
        ):
            self._line(stage, state, done, total, now)

    def _line(self, stage: str, state: _Stage, done: int, total: int, now: float) -> None:
        state.printed_at = now
        state.printed_fraction = done / total if total else 1.0
        label = self.labels.get(stage, stage)
        parts = [f"{time.strftime('%H:%M:%S')} {label}: {self._amount(stage, done)}/{self._amount(stage, total)}"]
        if total:
            parts[0] += f" ({100 * done / total:.0f}%)"
        elapsed = now - state.started
        if done >= total:
            state.finished = True
            parts.append(f"done in {duration(elapsed)}")
        elif done and elapsed > 0:
            rate = done / elapsed
            parts.append(f"{self._amount(stage, rate, rate=True)}/s")
            parts.append(f"about {duration((total - done) / rate)} left")
        self.write(", ".join(parts))

    def _amount(self, stage: str, value: float, rate: bool = False) -> str:
        """How a stage's counts (and rates) read: `1,234`, `12.3` (a subclass writes bytes)."""
        if rate:
            return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
        return f"{value:,}"
