"""How often does each interval of a paired difference hold the true difference? Simulated studies, known truth.

Prints, for 3 and 5 seeds on 800 and 3,800 test rows, with and without a seed effect, the coverage and mean
width of the project's interval over seeds and rows (``comparison.paired_difference_ci``), of the paired
bootstrap over rows alone, and of the plain two-stage bootstrap that resamples seeds and rows; writes them as
JSON (``benchmarks/results/interval_coverage.json`` by default, which the guide's generated block reads).
The model of a simulated study: ``lora_agnews.studies.coverage``. About 5 minutes on one core:

    .venv/bin/python benchmarks/interval_coverage.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_agnews.core.paths import write_json  # noqa: E402
from lora_agnews.studies import coverage  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=400, help="simulated studies per scenario")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws per interval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / coverage.COVERAGE_FILE)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    result = coverage.benchmark(args.studies, args.n_boot, args.seed)
    print(coverage.table(result).markdown())
    print(coverage.sentence(result))
    write_json(result, args.out)
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
