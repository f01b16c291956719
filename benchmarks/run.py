"""Run every benchmark and print their tables: ``python benchmarks/run.py [NAME ...]``.

Names: ``inprocess``, ``scheduler``, ``redis``, ``dashboard`` (default: all). Each
benchmark measures its raw baseline in the same run and prints it beside flowrra's figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = {
    "inprocess": HERE / "bench_inprocess.py",
    "scheduler": HERE / "bench_scheduler.py",
    "redis": HERE / "bench_redis.py",
    "dashboard": HERE / "bench_dashboard.py",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
        return 2
    status = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        status |= subprocess.run([sys.executable, str(BENCHMARKS[name])], check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
