"""airdock's benchmarks: ``python -m benchmarks`` (``make bench``) runs them and records the figures.

A benchmark is a module in this package (name not starting with ``_``) that defines
``run(scale: float, repeat: int) -> list[Figure]``: ``scale`` shrinks or grows the workload
(1.0 is the size the figure's name promises), ``repeat`` is how many times to measure it. The
harness finds such modules by itself; adding a figure means adding a module (or a figure to one).
"""

from __future__ import annotations

import importlib
import pkgutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

__all__ = ["Figure", "discover", "time_calls"]


@dataclass(frozen=True)
class Figure:
    """One measured number: its median over ``samples``, and a baseline to compare with, if any."""

    name: str  # e.g. "gc_plan_10k_s"; also its key in results/latest.json
    airdock: float  # the median of the samples
    baseline: float | None  # the same figure for the thing airdock replaces; None: no baseline
    unit: str  # "s", "images/s", "MB/s"...
    samples: tuple[float, ...]
    note: str = ""  # the target, the workload, anything the table should say

    @classmethod
    def of(
        cls, name: str, samples: tuple[float, ...], unit: str, baseline: float | None = None, note: str = ""
    ) -> Figure:
        return cls(name, statistics.median(samples), baseline, unit, samples, note)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    @property
    def ratio(self) -> float | None:
        """airdock / baseline (None without a baseline)."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.airdock / self.baseline


def time_calls(fn: Callable[[], object], repeat: int, warmup: int = 1) -> tuple[float, ...]:
    """Seconds each of ``repeat`` calls of ``fn`` took, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return tuple(samples)


def discover() -> dict[str, ModuleType]:
    """The benchmark modules of this package, by name, in name order."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "run", None)):
            found[info.name] = module
    return found
