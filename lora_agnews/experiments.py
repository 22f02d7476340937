"""Ablations, multi-seed runs and the statistics that make an accuracy claim hold.

A single run at 95% accuracy on 7,600 test examples carries a standard error of about 0.25
points, and seed-to-seed spread is similar, so a configuration is compared with the
starting point's over several seeds, with a bootstrap confidence interval over test
examples and McNemar's test on paired predictions. Every run is an ordinary run directory
(resumable, with a run record); aggregation reads complete runs only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths, runs
from .artifacts import read_json, write_json
from .budget import largest_rank
from .config import NEW_KEY_DEFAULTS, Config
from .model import count_trainable
from .progress import say

ABLATION_FILE = "ablation.json"
STATISTICS_FILE = "statistics.json"


# --------------------------------------------------------------------------- naming
def run_name(cfg: Config) -> str:
    """A readable, unique directory name for a variant: ``r8-query+key+value-linear``."""
    parts = [f"r{cfg.lora_r}", cfg.lora_targets.replace(",", "+"), cfg.head]
    if cfg.method != "lora":  # LoRA names stay as they were; other methods lead with their name
        parts.insert(0, cfg.method + (f"{cfg.prompt_tokens}" if cfg.method == "prompt" else ""))
    if cfg.lora_variant != "lora":
        parts.append(cfg.lora_variant)
    if cfg.lora_layers:
        parts.append("layers" + cfg.lora_layers.replace(",", "_"))
    return "-".join(parts)


def baseline_config(cfg: Config) -> Config:
    """The starting point's configuration (LoRA r=7, alpha=32, query/key/value, default head) with cfg's recipe."""
    return cfg.replace(lora_r=cfg.baseline_r, lora_alpha=cfg.baseline_alpha, lora_targets=cfg.baseline_targets,
                       head=cfg.baseline_head, lora_variant="lora", lora_layers="", **NEW_KEY_DEFAULTS)


# --------------------------------------------------------------------------- ablation grid
def ablation_grid(cfg: Config) -> list[Config]:
    """Rank x target set x head from the profile; ``max`` is the largest rank within the budget.

    LoRA's alpha is scaled with the rank (alpha/r kept at the profile's ratio) so the grid
    varies capacity, not the effective learning rate.
    """
    ratio = cfg.lora_alpha / cfg.lora_r
    ranks = [r.strip() for r in cfg.ablation_ranks.split(",") if r.strip()]
    target_sets = [t.strip() for t in cfg.ablation_targets.split(";") if t.strip()]
    heads = [h.strip() for h in cfg.ablation_heads.split(",") if h.strip()]
    grid: list[Config] = []
    seen: set[str] = set()
    for targets in target_sets:
        for head in heads:
            base = cfg.replace(lora_targets=targets, head=head, epochs=cfg.ablation_epochs)
            for token in ranks:
                r = largest_rank(base) if token == "max" else int(token)
                if r <= 0:
                    continue
                variant = base.replace(lora_r=r, lora_alpha=max(1, int(round(ratio * r))))
                if run_name(variant) not in seen:
                    seen.add(run_name(variant))
                    grid.append(variant)
    return grid


def _row(variant: Config, run_dir: Path, metrics: dict[str, Any] | None, params: int, status: str) -> dict[str, Any]:
    return {"name": run_name(variant), "lora_r": variant.lora_r, "lora_alpha": variant.lora_alpha,
            "lora_targets": variant.lora_targets, "head": variant.head, "trainable_params": params,
            "within_budget": params <= variant.budget, "status": status,
            "accuracy": metrics["accuracy"] if metrics else math.nan,
            "macro_f1": metrics["macro_f1"] if metrics else math.nan,
            "best_validation_accuracy": (metrics.get("best_validation_accuracy") if metrics else None),
            "train_seconds": metrics.get("train_seconds") if metrics else None, "run_dir": str(run_dir)}


def run_ablation(cfg: Config) -> pd.DataFrame:
    """Train every grid variant within the budget (complete runs are reused, stale ones replaced) and tabulate."""
    from .train import train_owned

    root = paths.runs_dir(cfg.profile) / "ablation"
    grid = ablation_grid(cfg)
    rows = []
    for i, variant in enumerate(grid, 1):
        run_dir = root / run_name(variant)
        params = count_trainable(variant)["total"]
        if params > variant.budget:
            say(f"ablation {i}/{len(grid)}: {run_name(variant)} needs {params:,} > budget; not trained")
            rows.append(_row(variant, run_dir, None, params, "over budget"))
            continue
        run_dir = reusable_run(variant) or run_dir
        say(f"ablation {i}/{len(grid)}: {run_name(variant)} ({params:,} trainable parameters)")
        metrics = train_owned(variant, run_dir)
        rows.append(_row(variant, run_dir, metrics, params, "complete"))
    frame = add_intervals(pd.DataFrame(rows), seed=cfg.seed)
    frame["pareto"] = pareto_front(frame)
    write_json(frame.to_dict(orient="records"), paths.results_dir(cfg.profile) / ABLATION_FILE)
    return frame


def add_intervals(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Each trained variant's 95% bootstrap interval, and its paired difference to the best variant.

    One seed per variant: the interval covers test-set sampling only, and the paired difference (the
    same test rows scored by both) is what says whether two variants really differ. Read from the
    test predictions each run saved.
    """
    frame = frame.copy()
    correct = {}
    for idx, row in frame.iterrows():
        saved = Path(str(row["run_dir"])) / "test_predictions.npz"
        if row["status"] == "complete" and saved.is_file():
            with np.load(saved) as pred:
                correct[idx] = pred["logits"].argmax(axis=1) == pred["labels"]
    columns = ("ci_low", "ci_high", "diff_to_best", "diff_ci_low", "diff_ci_high")
    for column in columns:
        frame[column] = math.nan
    frame["best"] = False
    if not correct:
        return frame
    best = max(correct, key=lambda i: (correct[i].mean(), -frame.at[i, "trainable_params"]))
    frame.at[best, "best"] = True
    for idx, right in correct.items():
        lo, hi = bootstrap_ci(right, seed=seed)
        d_lo, d_hi = paired_difference_ci(right[None], correct[best][None], seed=seed)
        frame.loc[idx, list(columns)] = [lo, hi, float(right.mean() - correct[best].mean()), d_lo, d_hi]
    return frame


def pareto_front(frame: pd.DataFrame) -> pd.Series:
    """True for trained variants no other trained variant beats with fewer or equal parameters."""
    ok = frame["status"].eq("complete") & frame["accuracy"].notna()
    front = pd.Series(False, index=frame.index)
    best = -math.inf
    for idx in frame[ok].sort_values(["trainable_params", "accuracy"], ascending=[True, False]).index:
        if frame.at[idx, "accuracy"] > best:
            front[idx] = True
            best = frame.at[idx, "accuracy"]
    return front


# --------------------------------------------------------------------------- seeds and statistics
def bootstrap_ci(correct: np.ndarray, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile bootstrap CI of mean accuracy over test examples.

    ``correct`` is (n_seeds, n_examples) of 0/1; examples are resampled jointly for all
    seeds, so the interval covers test-set sampling of the seed-averaged accuracy.
    """
    correct = np.atleast_2d(correct).astype(np.float32)
    rng = np.random.default_rng(seed)
    n = correct.shape[1]
    per_example = correct.mean(axis=0)
    stats = np.empty(n_boot)
    for b in range(0, n_boot, 200):
        idx = rng.integers(0, n, size=(min(200, n_boot - b), n))
        stats[b:b + len(idx)] = per_example[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    return [float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))]


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's test on paired predictions: exact binomial when discordant pairs < 25, else chi2 (corrected)."""
    from scipy import stats

    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int(np.sum(a & ~b_))  # a right, b wrong
    c = int(np.sum(~a & b_))  # a wrong, b right
    if b + c == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "method": "no discordant pairs"}
    if b + c < 25:
        p = stats.binomtest(min(b, c), b + c, 0.5).pvalue
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": float(p), "method": "exact binomial"}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": float(stats.chi2.sf(statistic, 1)),
            "method": "chi-square with continuity correction"}


def _seed_runs(cfg: Config, name: str) -> dict[str, Any]:
    from .train import train_owned

    root = paths.runs_dir(cfg.profile) / "seeds" / name
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    accs, f1s, correct = [], [], []
    for seed in seeds:
        say(f"seeds: {name} seed {seed}")
        run_dir = reusable_run(cfg.replace(seed=seed)) or root / f"seed{seed}"
        metrics = train_owned(cfg.replace(seed=seed), run_dir)
        pred = np.load(run_dir / "test_predictions.npz")
        correct.append(pred["logits"].argmax(axis=1) == pred["labels"])
        accs.append(metrics["accuracy"])
        f1s.append(metrics["macro_f1"])
    matrix = np.stack(correct)
    return {"name": name, "config": cfg.to_dict(), "trainable_params": count_trainable(cfg)["total"],
            "seeds": seeds, "accuracy": accs, "macro_f1": f1s, "mean": float(np.mean(accs)),
            "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
            "macro_f1_mean": float(np.mean(f1s)), "bootstrap_ci": bootstrap_ci(matrix, seed=cfg.seed),
            "pooled_accuracy": float(matrix.mean()), "_correct": matrix}


def reusable_run(cfg: Config) -> Path | None:
    """A complete run of the profile with exactly this configuration, wherever the pipeline put it.

    The main run, an ablation variant and a seed run can be the same training (the chosen
    configuration at the first seed, the baseline in the grid): each is trained once and read
    wherever it is needed. The main run is preferred; otherwise the first match in path order.
    """
    root = paths.runs_dir(cfg.profile)
    key = cfg.run_key()
    candidates = [root / "main", *runs.complete_runs(root)]
    for run_dir in candidates:
        record = runs.read_record(run_dir) or {}
        if record.get("status") == "complete" and record.get("run_key") == key:
            return run_dir
    return None


def run_seeds(cfg: Config) -> dict[str, Any]:
    """The chosen configuration and the baseline over ``n_seeds`` seeds; writes statistics.json."""
    chosen = _seed_runs(cfg, "chosen-" + run_name(cfg))
    base_cfg = baseline_config(cfg)
    baseline = _seed_runs(base_cfg, "baseline-" + run_name(base_cfg))
    ca, cb = chosen.pop("_correct"), baseline.pop("_correct")
    per_seed = [mcnemar(a, b) | {"seed": s} for a, b, s in zip(ca, cb, chosen["seeds"])]
    diff = ca.mean(axis=0) - cb.mean(axis=0)
    result = {"chosen": chosen, "baseline": baseline, "n_eval": int(ca.shape[1]), "confidence": 0.95,
              "mcnemar": per_seed[0], "mcnemar_per_seed": per_seed,
              "difference": {"mean": float(diff.mean()),
                             "bootstrap_ci": paired_difference_ci(ca, cb, seed=cfg.seed)},
              "profile": cfg.profile}
    write_json(result, paths.results_dir(cfg.profile) / STATISTICS_FILE)
    return result


def paired_difference_ci(ca: np.ndarray, cb: np.ndarray, seed: int, n_boot: int = 2000) -> list[float]:
    """Paired bootstrap 95% CI of (a - b) seed-averaged accuracy; ``ca``, ``cb`` are (seeds, examples) of 0/1."""
    per_example = ca.mean(axis=0).astype(np.float32) - cb.mean(axis=0).astype(np.float32)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_example), size=(n_boot, len(per_example)))
    stats = per_example[idx].mean(axis=1)
    return [float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))]


# --------------------------------------------------------------------------- aggregation
def aggregate(profile: str) -> pd.DataFrame:
    """Every run directory of a profile (ablation + seeds + main) in one table.

    Incomplete or failed runs are listed with their status and no metrics, never with numbers.
    """
    root = paths.runs_dir(profile)
    rows = []
    for record_file in sorted(root.rglob(runs.RUN_FILE)):
        run_dir = record_file.parent
        record = runs.read_record(run_dir) or {}
        cfg = record.get("config", {})
        row = {"run": str(run_dir.relative_to(root)), "status": record.get("status", "unknown"),
               "lora_r": cfg.get("lora_r"), "lora_targets": cfg.get("lora_targets"), "head": cfg.get("head"),
               "seed": cfg.get("seed"), "accuracy": math.nan, "macro_f1": math.nan, "trainable_params": None}
        if row["status"] == "complete" and (run_dir / runs.METRICS_FILE).is_file():
            metrics = read_json(run_dir / runs.METRICS_FILE)
            row.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"],
                       trainable_params=metrics["trainable_params"])
        rows.append(row)
    return pd.DataFrame(rows)
