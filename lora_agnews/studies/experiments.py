"""Ablations and multi-seed runs: the grid, the seed study, and the runs behind an accuracy claim.

A single run at 95% accuracy on 7,600 test examples carries a standard error of about 0.25
points, and seed-to-seed spread is similar, so a configuration is compared with the
starting point's over several seeds, on the same test rows (:func:`lora_agnews.studies.comparison.compare`:
bootstrap intervals and McNemar's test on paired predictions). Every run is an ordinary run
directory (resumable, with a run record); aggregation reads complete runs only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..core import paths, runs
from ..core.paths import read_json, say, write_json
from ..core.budget import count_trainable, largest_rank
from ..core.build import check_method
from .comparison import PREDICTIONS_FILE, Arm, compare, pareto_front, run_arm
from ..core.config import Config, ConfigError, NEW_KEY_DEFAULTS, candidate_rates, method_rates
from ..core.methods import METHODS

ABLATION_FILE = "ablation.json"
RATES_FILE = "learning_rates.json"
STATISTICS_FILE = "statistics.json"


# --------------------------------------------------------------------------- naming
def run_name(cfg: Config) -> str:
    """A readable, unique directory name for a variant: ``r8-query+key+value-linear``."""
    parts = [f"r{cfg.lora_r}", cfg.lora_targets.replace(",", "+"), cfg.head]
    method, key = METHODS[cfg.method], METHODS[cfg.method].size_key
    if cfg.method != "lora":  # LoRA names stay as they were; other methods lead with their name
        parts.insert(0, cfg.method + (str(getattr(cfg, key)) if key not in ("lora_r", None) else ""))  # prompt4
        if key != "lora_r":  # a rank that means nothing to the method is not in its name
            parts.remove(f"r{cfg.lora_r}")
        if method.whole_encoder:
            parts.remove(cfg.lora_targets.replace(",", "+"))
    if cfg.lora_variant != "lora":
        parts.append(cfg.lora_variant)
    if cfg.lora_layers:
        parts.append("layers" + cfg.lora_layers.replace(",", "_"))
    if cfg.method in method_rates(cfg):  # the method's own rate (method_learning_rates): say which
        parts.append(f"lr{cfg.learning_rate:g}")
    return "-".join(parts)


def baseline_config(cfg: Config) -> Config:
    """The starting point's configuration (LoRA r=7, alpha=32, query/key/value, default head) with cfg's recipe."""
    return cfg.replace(lora_r=cfg.baseline_r, lora_alpha=cfg.baseline_alpha, lora_targets=cfg.baseline_targets,
                       head=cfg.baseline_head, lora_variant="lora", lora_layers="",
                       **{k: v for k, v in NEW_KEY_DEFAULTS.items() if k != "task"})  # same task, plain LoRA


# --------------------------------------------------------------------------- ablation grid
def ablation_grid(cfg: Config) -> list[Config]:
    """Method x target set x head x size from the profile; ``max`` is the largest size within the budget.

    A method's size is its LoRA rank (LoRA, PiSSA, OLoRA, AdaLoRA's initial rank, VeRA's shared rank,
    LoHa) or its number of prompt tokens; size-less methods ((IA)3, BitFit, LayerNorm) give one variant
    per target set and head, and methods that adapt the whole encoder (BitFit, LayerNorm, prompt
    tuning) ignore the target sets. LoRA's alpha is scaled with the rank (alpha/r kept at the
    profile's ratio) so the grid varies capacity, not the effective learning rate. A combination
    PEFT cannot build (e.g. BitFit with the lora-dense head) is left out with a message.

    A method trains at its ``method_learning_rates`` entry, else at ``learning_rate``. A method named in
    ``lr_candidates`` is also trained at each listed rate at its smallest size (first target set and head):
    the runs its rate was picked from on validation accuracy (``lr_search`` in the table; they are not
    grid settings and join neither the Pareto front nor the seed study).
    """
    ratio = cfg.lora_alpha / cfg.lora_r
    rates, candidates = method_rates(cfg), candidate_rates(cfg)
    ranks = _items(cfg.ablation_ranks, ",")
    target_sets = _items(cfg.ablation_targets, ";")
    heads = _items(cfg.ablation_heads, ",")
    grid: list[Config] = []
    seen: set[str] = set()
    for method in _items(cfg.ablation_methods, ","):
        key = METHODS[method].size_key
        for targets in target_sets[:1] if METHODS[method].whole_encoder else target_sets:
            for head in heads:
                try:
                    base = cfg.replace(lora_targets=targets, head=head, epochs=cfg.ablation_epochs, method=method,
                                       **({} if method == "lora" else {"lora_variant": "lora", "adalora_target_r": 0}))
                    check_method(base)
                    sizes = [largest_rank(base) if t == "max" else int(t) for t in ranks] if key else [0]
                except ConfigError as exc:
                    say(f"ablation: {method} with {head} head left out: {exc}")
                    continue
                base = base.replace(learning_rate=rates.get(method, cfg.learning_rate))
                sizes = [s for s in sizes if s > 0 or not key]
                for size in sizes:
                    grid += _new(_sized(base, key, size, ratio), seen)
                if method in candidates and sizes and (targets, head) == (target_sets[0], heads[0]):
                    smallest = _sized(base, key, min(sizes), ratio)
                    for rate in candidates[method]:
                        grid += _new(_at_rate(smallest, cfg, rate), seen)
    return grid


def _sized(base: Config, key: str | None, size: int, ratio: float) -> Config:
    """``base`` at ``size`` (LoRA's alpha scaled with the rank); size-less methods unchanged."""
    changes: dict[str, Any] = {} if key is None else {key: size}
    if key == "lora_r":
        changes["lora_alpha"] = max(1, int(round(ratio * size)))
    return base.replace(**changes)


def _at_rate(variant: Config, cfg: Config, rate: float) -> Config:
    """``variant`` trained at ``rate``; a rate other than the profile's is recorded as the variant's own
    (``method_learning_rates``), so its name says it and a setting at the profile's rate keeps its name."""
    if variant.method not in method_rates(cfg) and rate == cfg.learning_rate:
        return variant
    own = {**method_rates(variant), variant.method: rate}
    return variant.replace(learning_rate=rate, method_learning_rates=",".join(f"{m}={r!r}" for m, r in own.items()))


def _new(variant: Config, seen: set[str]) -> list[Config]:
    name = run_name(variant)
    if name in seen:
        return []
    seen.add(name)
    return [variant]


def is_lr_search(cfg: Config, variant: Config) -> bool:
    """True for a run trained only to pick the method's rate (a candidate rate other than the one it uses)."""
    return (variant.method in candidate_rates(cfg)
            and variant.learning_rate != method_rates(cfg).get(variant.method, cfg.learning_rate))


def rate_choices(cfg: Config, grid: list[Config] | None = None) -> list[dict[str, Any]]:
    """Per method of ``lr_candidates``: each rate's validation (and test) accuracy, the pick, the rate used.

    The pick is the best validation accuracy (ties: the smaller rate); test accuracy is shown, never used.
    Rates whose run is not complete yet have None. ``agrees`` says whether the profile's recorded rate
    (``method_learning_rates``, else ``learning_rate``) is the pick: a profile edited without rerunning
    the choice, or a choice overturned by new runs, is then visible instead of silent.
    """
    rates_used = method_rates(cfg)
    out = []
    for method, rates in candidate_rates(cfg).items():
        rows = {}
        for v in grid if grid is not None else ablation_grid(cfg):
            if v.method == method and v.learning_rate in rates and v.learning_rate not in rows:
                run_dir = reusable_run(v)
                metrics = read_json(run_dir / runs.METRICS_FILE) if run_dir else {}
                rows[v.learning_rate] = {"rate": v.learning_rate, "name": run_name(v),
                                         "validation": metrics.get("best_validation_accuracy"),
                                         "test": metrics.get("accuracy")}
        table = [rows.get(r, {"rate": r, "name": None, "validation": None, "test": None}) for r in rates]
        scored = [r for r in table if r["validation"] is not None]
        picked = max(scored, key=lambda r: (r["validation"], -r["rate"]))["rate"] if scored else None
        used = rates_used.get(method, cfg.learning_rate)
        out.append({"method": method, "rates": table, "picked": picked, "used": used,
                    "complete": len(scored) == len(table), "agrees": picked == used})
    return out


def saved_rate_choices(cfg: Config) -> list[dict[str, Any]]:
    """The rate search as :func:`run_ablation` wrote it (``learning_rates.json``), without rebuilding the grid."""
    path = paths.results_dir(cfg.profile) / RATES_FILE
    return read_json(path) if path.is_file() else rate_choices(cfg)


def _items(text: str, sep: str) -> list[str]:
    return [t.strip() for t in text.split(sep) if t.strip()]


def rate_search_rows(frame: pd.DataFrame) -> pd.Series:
    """True for the rows trained only to pick a method's rate (``lr_search``); all False for older tables."""
    if "lr_search" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["lr_search"].fillna(False).astype(bool)


def grid_settings(table: pd.DataFrame) -> pd.DataFrame:
    """The grid's settings: its rows less the runs that only picked a method's learning rate."""
    return table[~rate_search_rows(table)]


def _row(variant: Config, run_dir: Path, metrics: dict[str, Any] | None, params: int, status: str,
         lr_search: bool = False) -> dict[str, Any]:
    key = METHODS[variant.method].size_key
    return {"name": run_name(variant), "method": variant.method, "lora_variant": variant.lora_variant,
            "learning_rate": variant.learning_rate, "lr_search": lr_search,
            "size": getattr(variant, key) if key else None, "size_key": key,
            "prompt_tokens": variant.prompt_tokens, "lora_r": variant.lora_r, "lora_alpha": variant.lora_alpha,
            "lora_targets": variant.lora_targets, "head": variant.head, "trainable_params": params,
            "within_budget": params <= variant.budget, "status": status,
            "accuracy": metrics["accuracy"] if metrics else math.nan,
            "macro_f1": metrics["macro_f1"] if metrics else math.nan,
            "best_validation_accuracy": (metrics.get("best_validation_accuracy") if metrics else None),
            "train_seconds": metrics.get("train_seconds") if metrics else None, "run_dir": str(run_dir)}


def ablation_runs(cfg: Config) -> list[tuple[Config, Path, int, bool]]:
    """Every grid variant with the directory it trains into, its trainable count and whether it only picks a rate.

    The one list :func:`run_ablation` trains and :mod:`lora_agnews.plan` lists, so the two cannot disagree. A variant
    over the budget is listed with its count and never trained.
    """
    root = paths.runs_dir(cfg.profile) / "ablation"
    return [(v, root / run_name(v), count_trainable(v)["total"], is_lr_search(cfg, v)) for v in ablation_grid(cfg)]


def grid_table(cfg: Config, metrics_of: Callable[[Config, Path], dict[str, Any] | None],
               planned: list[tuple[Config, Path, int, bool]] | None = None) -> pd.DataFrame | None:
    """The grid's rows as :func:`run_ablation` tabulates them (without intervals), from ``metrics_of(variant, own
    directory)``; None while a variant within the budget has no metrics yet. What :func:`top_variants` needs to pick
    the seed study's grid settings before the notebooks run (the plan; ``planned``: :func:`ablation_runs` already
    made)."""
    rows = []
    for variant, run_dir, params, searched in ablation_runs(cfg) if planned is None else planned:
        if params > variant.budget:
            rows.append(_row(variant, run_dir, None, params, "over budget", searched))
            continue
        metrics = metrics_of(variant, run_dir)
        if metrics is None:
            return None
        rows.append(_row(variant, run_dir, metrics, params, "complete", searched))
    return pd.DataFrame(rows)


def run_ablation(cfg: Config) -> pd.DataFrame:
    """Train every grid variant within the budget (complete runs are reused, stale ones replaced) and tabulate."""
    from ..core.train import train_owned

    from ..core.runs import invalidate_results

    planned = ablation_runs(cfg)
    grid = [variant for variant, *_ in planned]
    invalidate_results(cfg.profile, "ablate")
    rows = []
    for i, (variant, run_dir, params, searched) in enumerate(planned, 1):
        if params > variant.budget:
            say(f"ablation {i}/{len(grid)}: {run_name(variant)} needs {params:,} > budget; not trained")
            rows.append(_row(variant, run_dir, None, params, "over budget", searched))
            continue
        run_dir = reusable_run(variant, own=run_dir) or run_dir
        say(f"ablation {i}/{len(grid)}: {run_name(variant)} ({params:,} trainable parameters)")
        metrics = train_owned(variant, run_dir)
        rows.append(_row(variant, run_dir, metrics, params, "complete", searched))
    frame = add_intervals(pd.DataFrame(rows), seed=cfg.seed)
    frame["pareto"] = grid_front(frame)
    write_json(frame.to_dict(orient="records"), paths.results_dir(cfg.profile) / ABLATION_FILE)
    write_json(rate_choices(cfg, grid), paths.results_dir(cfg.profile) / RATES_FILE)
    return frame


def add_intervals(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Each trained variant's 95% bootstrap interval, and its paired difference to the grid's pick.

    One seed per variant: the interval covers test-set sampling only, not the spread over seeds, so the grid is a
    screen and its paired differences decide nothing (no table or sentence shows them as a verdict: that needs
    ``yardsticks.MIN_SEEDS`` seeds, the seed study); they stay in ``ablation.json`` as data, which a reproduction
    compares with the archive's. Read from the test predictions each run saved. The reference (``reference``) is
    the setting with the best validation accuracy (ties: fewer parameters), as the seed study picks.
    """
    frame = frame.copy()
    arms = {idx: run_arm(str(idx), [Path(str(row["run_dir"]))]) for idx, row in frame.iterrows()
            if row["status"] == "complete" and (Path(str(row["run_dir"])) / PREDICTIONS_FILE).is_file()}
    columns = ("ci_low", "ci_high", "diff_to_reference", "diff_ci_low", "diff_ci_high")
    for column in columns:
        frame[column] = math.nan
    frame["reference"] = False
    if not arms:
        return frame
    searched = rate_search_rows(frame)
    settings = [i for i in arms if not searched[i]] or list(arms)  # a rate tried and not used is no setting
    reference = by_validation(frame.loc[settings]).index[0]
    frame.at[reference, "reference"] = True
    compared = compare(list(arms.values()), str(reference), seed, "the ablation")["arms"]
    for idx, result in zip(arms, compared):
        versus = result["vs_reference"]
        frame.loc[idx, list(columns)] = [*result["bootstrap_ci"], versus["mean"], *versus["bootstrap_ci"]]
    return frame


def by_validation(frame: pd.DataFrame) -> pd.DataFrame:
    """Grid rows best first by validation accuracy (ties: fewer parameters; a run without one last): the one rule
    that picks the grid's reference and the seed study's grid settings."""
    return frame.sort_values(["best_validation_accuracy", "trainable_params"], ascending=[False, True],
                             na_position="last", kind="stable")


def grid_front(frame: pd.DataFrame) -> pd.Series:
    """The grid settings on the Pareto front of trainable parameters against test accuracy.

    Runs that only picked a method's learning rate are no settings, so they are neither on the front
    nor push a setting off it.
    """
    accuracy = frame["accuracy"].where(~rate_search_rows(frame))
    return pd.Series(pareto_front(frame["trainable_params"], accuracy), index=frame.index)


# --------------------------------------------------------------------------- seeds and statistics
def _seed_runs(cfg: Config, name: str) -> tuple[Arm, dict[str, Any]]:
    """Train (or reuse) ``cfg`` at each of ``n_seeds`` seeds: the setting's arm, and what each run recorded."""
    from ..core.train import train_owned

    planned = seed_runs(cfg, name)
    seeds = [seed for seed, *_ in planned]
    run_dirs, f1s, train_s, eval_s, val = [], [], [], [], []
    for seed, run_cfg, own in planned:
        say(f"seeds: {name} seed {seed}")
        run_dir = reusable_run(run_cfg, own=own) or own
        metrics = train_owned(run_cfg, run_dir)
        run_dirs.append(run_dir)
        f1s.append(metrics["macro_f1"])
        train_s.append(metrics.get("train_seconds"))
        eval_s.append(metrics.get("eval_seconds"))
        val.append(metrics.get("best_validation_accuracy"))
    facts = {"config": cfg.to_dict(), "trainable_params": count_trainable(cfg)["total"], "macro_f1": f1s,
             "macro_f1_mean": float(np.mean(f1s)), "train_seconds": train_s, "eval_seconds": eval_s,
             "best_validation_accuracy": val}
    return run_arm(name, run_dirs, seeds), facts


def seed_runs(cfg: Config, name: str) -> list[tuple[int, Config, Path]]:
    """``(seed, configuration, own directory)`` of each run of the setting ``cfg`` named ``name`` in the seed study
    (the list :func:`run_seeds` trains and the plan lists)."""
    root = paths.runs_dir(cfg.profile) / "seeds" / name
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    return [(seed, seed_run_config(cfg, seed), root / f"seed{seed}") for seed in seeds]


def seed_run_config(cfg: Config, seed: int) -> Config:
    """One run of the seed study: ``cfg`` at ``seed``, scored on ``seed_eval_samples`` test rows where that is set.

    A larger test subset than the grid's halves the paired interval at four times the rows; the runs are then
    other runs than the grid's (their key holds the rows they were scored on), so the study trains its own.
    """
    return cfg.replace(seed=seed, max_eval_samples=cfg.seed_eval_samples or cfg.max_eval_samples)


def reusable_run(cfg: Config, own: Path | None = None) -> Path | None:
    """A complete run of the profile with exactly this configuration, wherever the pipeline put it.

    The main run, an ablation variant and a seed run can be the same training (the chosen
    configuration at the first seed, the baseline in the grid): each is trained once and read
    wherever it is needed. The study's ``own`` path is preferred when it holds the run, then the main run,
    then the first match in path order: a study then reads the same record whichever other studies ran
    (or were restored) before it, so its timings do not depend on the order of the notebooks.
    """
    root = paths.runs_dir(cfg.profile)
    key = runs.run_key(cfg)
    candidates = [*([own] if own is not None else []), root / "main", *runs.complete_runs(root)]
    for run_dir in candidates:
        record = runs.read_record(run_dir) or {}
        if record.get("status") == "complete" and runs.same_key(record.get("run_key"), key):
            return run_dir
    return None


def top_variants(cfg: Config, ablation: pd.DataFrame, k: int) -> list[Config]:
    """The ``k`` trained grid variants with the best VALIDATION accuracy, other than the chosen and the baseline.

    Chosen on validation, never on test: the seed study then measures them on the test rows, so picking
    the best of several on test accuracy does not inflate what the table reports.
    """
    if k <= 0:
        return []
    taken = [cfg.run_key(), baseline_config(cfg).run_key()]
    by_name = {run_name(v): v for v in ablation_grid(cfg)}
    scored = ablation[(ablation["status"] == "complete") & ablation["best_validation_accuracy"].notna()]
    scored = grid_settings(scored)
    scored = by_validation(scored)
    picked: list[Config] = []
    for name in scored["name"]:
        variant = by_name.get(name)
        if variant is None:  # a table from another grid
            continue
        variant = variant.replace(epochs=cfg.epochs)  # the seed study's recipe (the grid may train shorter)
        if variant.run_key() in taken:
            continue
        picked.append(variant)
        if len(picked) == k:
            break
    return picked


def _read_ablation(cfg: Config) -> pd.DataFrame:
    path = paths.results_dir(cfg.profile) / ABLATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"study_top={cfg.study_top} picks grid variants from {path}, which is missing; run the "
                                f"ablation first (notebook 04 does, or `python -m lora_agnews ablate --profile "
                                f"{cfg.profile}`), or set -p study_top 0.")
    return pd.DataFrame(read_json(path))


def seed_settings(cfg: Config, ablation: pd.DataFrame | None) -> list[tuple[str, Config, str]]:
    """``(role, configuration, name)`` of each setting of the seed study: chosen, baseline, then the ``study_top``
    grid variants picked from ``ablation`` (the grid's table; None: none picked)."""
    base_cfg = baseline_config(cfg)
    named = [("chosen", cfg, "chosen-" + run_name(cfg)), ("baseline", base_cfg, "baseline-" + run_name(base_cfg))]
    named += [(f"grid {i}", v, "grid-" + run_name(v))
              for i, v in enumerate(top_variants(cfg, ablation, cfg.study_top) if ablation is not None else [], 1)]
    return named


SETTING_PREFIXES = ("chosen-", "baseline-", "grid-")  # what seed_settings puts before a setting's run name


def setting_run_name(study_name: str) -> str:
    """The run name (the grid's ``name``) of a seed-study setting named by :func:`seed_settings`."""
    return next((study_name[len(p):] for p in SETTING_PREFIXES if study_name.startswith(p)), study_name)


def run_seeds(cfg: Config, ablation: pd.DataFrame | None = None) -> dict[str, Any]:
    """The chosen configuration, the baseline and ``study_top`` grid variants over ``n_seeds`` seeds.

    Every setting is compared with the baseline (the starting point's setting) on the same test rows
    (:func:`seed_statistics`). Writes statistics.json; ``chosen``, ``baseline`` and ``difference`` keep their
    meaning, and ``settings`` lists all of them in the order chosen, baseline, grid variants.
    """
    from ..core.runs import invalidate_results

    if cfg.study_top and ablation is None:
        ablation = _read_ablation(cfg)
    invalidate_results(cfg.profile, "seeds")
    named = seed_settings(cfg, ablation)
    arms, facts = zip(*(_seed_runs(variant, name) for _, variant, name in named))
    result = seed_statistics([role for role, _, _ in named], list(arms), list(facts), cfg.seed, cfg.profile)
    write_json(result, paths.results_dir(cfg.profile) / STATISTICS_FILE)
    return result


def seed_statistics(roles: list[str], arms: list[Arm], facts: list[dict[str, Any]], seed: int,
                    profile: str) -> dict[str, Any]:
    """The seed study's result from each setting's arm and recorded facts (chosen first, the baseline second).

    Each setting against the baseline: the paired interval of the seed-averaged difference over seeds and test
    rows, and McNemar's test for every seed (:func:`.comparison.compare`). ``mcnemar`` is the chosen setting's
    test at the first seed; ``mcnemar_per_seed`` holds every seed's, each naming its seed.
    """
    study = compare(arms, arms[1].name, seed, "the seed study")
    entries = [{**result, **fact, "role": role} for role, result, fact in zip(roles, study["arms"], facts, strict=True)]
    for entry in entries:  # the seed study's reference is the baseline
        entry["vs_baseline"] = entry.pop("vs_reference")
    chosen, baseline = entries[0], entries[1]
    per_seed = chosen["vs_baseline"]["mcnemar_per_seed"]
    return {"chosen": chosen, "baseline": baseline, "settings": entries, "n_eval": study["n_eval"],
            "confidence": study["confidence"], "mcnemar": per_seed[0], "mcnemar_per_seed": per_seed,
            "difference": {"mean": chosen["vs_baseline"]["mean"], "bootstrap_ci": chosen["vs_baseline"]["bootstrap_ci"]},
            "profile": profile}
