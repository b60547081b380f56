"""Every benchmark, one after another, then each goal with its figure: `python -m benchmarks [--check]`.

    python -m benchmarks [--check]      (make benchmark, or make benchmark CHECK=1)

Runs run.py (the embedded engine), lambda_path.py (the Lambda path and its
cold start) and fanout.py (fan-out, measured and simulated), each with its
own defaults, and prints the goals of all three together at the end. With
--check the exit code is 1 when any goal is missed (each benchmark still runs).
"""

from __future__ import annotations

import argparse

from . import fanout, lambda_path, measure, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    measure.add_check_option(parser)
    options = parser.parse_args(argv)
    for benchmark in (run, lambda_path, fanout):
        print(f"\n== python -m {benchmark.__name__}", flush=True)
        benchmark.main([])
    goals = [result for result in measure.SHOWN if result.goal is not None]
    print("\n== the goals")
    for result in goals:
        print(result.line())
    return measure.verdict(goals, options.check)


if __name__ == "__main__":
    raise SystemExit(main())
