"""Figures for benchmark output."""

import statistics


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> str:
    return (f"n={len(values)} p50={percentile(values, 50) * 1000:.0f} ms p95={percentile(values, 95) * 1000:.0f} ms "
            f"mean={statistics.mean(values) * 1000:.0f} ms max={max(values) * 1000:.0f} ms")
