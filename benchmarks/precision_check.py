"""Does bf16 cost accuracy? The same run trained twice, bf16 autocast and fp32, compared.

bf16 is the project's default on CUDA and on CPUs with bf16 units because it is 2x or more faster;
this script is the evidence that the speed is not paid for in accuracy. Both runs use the same
profile, overrides and seed (so the same data, split, initialisation and batch order); only
``precision`` differs. It prints the final test metrics side by side, how many test predictions
agree, the largest logit difference, and the wall time of each run, and writes them as JSON.

    .venv/bin/python benchmarks/precision_check.py --profile demo -p data ../shared/agnews-subset \\
        -p head linear -p max_train_samples 2000 -p epochs 2 --out /tmp/precision-check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_agnews.core.paths import write_json  # noqa: E402
from lora_agnews.cli import _common, load_config  # noqa: E402
from lora_agnews.core.train import train  # noqa: E402

PRECISIONS = ("bf16", "fp32")
METRICS = ("accuracy", "macro_f1", "ece", "nll")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common(p)  # --profile and -p KEY VALUE, exactly as the project's CLI
    p.add_argument("--out", type=Path, required=True, help="directory for the two runs and precision_check.json")
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def compare(out: Path) -> dict[str, object]:
    """Metrics, agreement and logit difference of the two finished runs in ``out``."""
    metrics = {p: json.loads((out / p / "metrics.json").read_text()) for p in PRECISIONS}
    logits = {}
    for p in PRECISIONS:
        with np.load(out / p / "test_predictions.npz") as saved:
            logits[p] = saved["logits"].astype(np.float64)
    a, b = logits["bf16"], logits["fp32"]
    return {
        "metrics": {p: {k: metrics[p].get(k) for k in METRICS} for p in PRECISIONS},
        "difference_bf16_minus_fp32": {k: metrics["bf16"][k] - metrics["fp32"][k] for k in METRICS
                                       if metrics["bf16"].get(k) is not None and metrics["fp32"].get(k) is not None},
        "prediction_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(a - b).max()),
        "n_eval": int(metrics["fp32"]["n_eval"]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = load_config(args)  # validates every -p before anything trains
    seconds = {}
    for precision in PRECISIONS:
        cfg = base.replace(precision=precision)
        start = time.perf_counter()
        train(cfg, args.out / precision, overwrite=args.overwrite)
        seconds[precision] = time.perf_counter() - start
    report = {"profile": args.profile, "overrides": dict(args.param), **compare(args.out), "wall_seconds": seconds}
    write_json(report, args.out / "precision_check.json")
    print(f"{'precision':<10}" + "".join(f"{k:>12}" for k in METRICS) + f"{'wall s':>10}")
    for p in PRECISIONS:
        m = report["metrics"][p]
        print(f"{p:<10}" + "".join(f"{m[k]:>12.4f}" if m[k] is not None else f"{'-':>12}" for k in METRICS)
              + f"{seconds[p]:>10.1f}")
    print(f"test predictions that agree: {report['prediction_agreement']:.2%} of {report['n_eval']:,}; "
          f"max |logit difference| {report['max_abs_logit_diff']:.3g}")
    print(f"JSON: {args.out / 'precision_check.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
