"""Side-by-side measurement shared by the benchmarks: medians of interleaved runs, ratios against goals."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Ratio:
    label: str
    ours: float
    theirs: float
    goal: float | None  # None: a figure to read, not to meet (e.g. one that depends on this machine's cores)
    unit: str = "ms"

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs

    def line(self) -> str:
        scale = 1000 if self.unit == "ms" else 1
        figures = (f"{self.label:<58} {self.ours * scale:9.1f} {self.unit:<2} {self.theirs * scale:9.1f} {self.unit:<2} "
                   f"{self.ratio:6.2f}x")
        if self.goal is None:
            return figures
        return f"{figures}  (goal <= {self.goal}x) {'ok' if self.met else 'OVER GOAL'}"

    @property
    def met(self) -> bool:
        return self.goal is None or self.ratio <= self.goal


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def compare(label: str, ours, theirs, repeat: int, goal: float | None) -> Ratio:
    """Time `ours` and `theirs` alternately, after one warm-up each (file cache, imports), and print the ratio."""
    ours(), theirs()
    our_times, their_times = [], []
    for _ in range(repeat):
        our_times.append(timed(ours))
        their_times.append(timed(theirs))
    return show(Ratio(label, statistics.median(our_times), statistics.median(their_times), goal))


# Every figure shown in this process, for a summary of the goals after several benchmarks (__main__.py).
SHOWN: list[Ratio] = []


def show(result: Ratio) -> Ratio:
    print(result.line(), flush=True)
    SHOWN.append(result)
    return result


def add_check_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="exit 1 when a ratio is over its goal (a plain run only prints)")


def verdict(results: list[Ratio], check: bool) -> int:
    """Print which goals were missed; the exit code is 1 for a missed goal only with --check."""
    over = [result.label.strip() for result in results if not result.met]
    print("all goals met" if not over else f"over goal: {', '.join(over)}")
    return 1 if over and check else 0
