"""Wall time of a query-sized call, for the scripts that time queries rather than servers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], runs: int) -> float:
    """The median of ``runs`` calls of ``fn``, in seconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)
