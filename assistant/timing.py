"""Timings reported with every answer: milliseconds since a `time.perf_counter()` reading."""

from __future__ import annotations

import time


def ms_since(started: float) -> float:
    """Milliseconds since `started` (a `time.perf_counter()` value), to two decimals."""
    return round((time.perf_counter() - started) * 1000, 2)
