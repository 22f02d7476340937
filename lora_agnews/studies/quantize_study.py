"""What a quantized base costs (notebook 06): the profile's recipe on a full-precision and on quantized encoders.

Each scheme of ``quantize_schemes`` (``none`` first: the reference) is trained ``quantize_seeds`` times with
the profile's own configuration, on the same test rows, so every quantized run is paired with the
full-precision run of its seed: the paired difference with its bootstrap interval over the seeds, and
McNemar's test per seed. Each run trains **in its own process** (``python -m lora_agnews train``), so its
peak resident memory is its own and not that of whatever the notebook's kernel held before; the run records
it (``process_peak_rss_bytes``), with the frozen base's bytes as held and at float32, and the seconds per
optimisation step. Complete runs are reused, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ..core import paths, runs
from ..core.paths import Table, interval, missing, num, pct, points, read_json, say, write_json
from .comparison import (CONFIDENCE, NOT_RESOLVED, compare, direction, mcnemar_header, pvalues_by_seed,
                         run_arm)
from .yardsticks import can_conclude
from ..core.config import CHOICES, Config, ConfigError, load

STUDY_FILE = "quantization.json"
REFERENCE = "none"
SCHEME_NAMES = {"none": "full precision", "nf4": "NF4 (4-bit)", "fp4": "FP4 (4-bit)", "int8": "int8 (8-bit)"}


def schemes(cfg: Config) -> list[str]:
    """The compared schemes, the full-precision reference first; an unknown one is refused with the choices."""
    named = [s.strip() for s in cfg.quantize_schemes.split(",") if s.strip()]
    bad = [s for s in named if s not in CHOICES["quantize"]]
    if bad:
        raise ConfigError(f"parameter 'quantize_schemes' names {', '.join(map(repr, bad))}; each must be one of "
                          f"{', '.join(CHOICES['quantize'])} (for example -p quantize_schemes none,nf4,int8).")
    return [REFERENCE] + [s for s in dict.fromkeys(named) if s != REFERENCE]


def scheme_label(scheme: str, double: bool = False) -> str:
    return SCHEME_NAMES.get(scheme, scheme) + (" + double quantisation" if double and scheme != REFERENCE else "")


def study_configs(cfg: Config) -> list[tuple[str, int, Config]]:
    """``(scheme, seed, config)`` for every run of the study: the profile's recipe with only the base changed."""
    seeds = [cfg.seed + i for i in range(cfg.quantize_seeds)]
    double = cfg.quantize_double
    return [(s, seed, cfg.replace(quantize=s, quantize_double=double and s in ("nf4", "fp4"), seed=seed))
            for s in schemes(cfg) for seed in seeds]


def run_dir(cfg: Config, scheme: str, seed: int) -> Path:
    return paths.runs_dir(cfg.profile) / "quantization" / scheme / f"seed{seed}"


def overrides(cfg: Config) -> list[str]:
    """``-p KEY VALUE`` arguments that turn the profile's configuration into ``cfg`` (for a fresh process)."""
    profile = load(cfg.profile).to_dict()
    args: list[str] = []
    for key, value in cfg.to_dict().items():
        if key != "profile" and value != profile.get(key):
            args += ["-p", key, str(value).lower() if isinstance(value, bool) else str(value)]
    return args


def train_isolated(cfg: Config, out: Path) -> dict[str, Any]:
    """Train ``cfg`` into ``out`` in a new Python process (a complete run there is reused); its metrics.

    ``out`` is a directory the study names itself, so a run of another configuration there is moved aside
    (``--owned``: :func:`lora_agnews.core.train.train_owned`'s rule), not refused as a user's ``--out`` would be.
    """
    command = [sys.executable, "-m", "lora_agnews", "train", "--profile", cfg.profile, *overrides(cfg), "--out", str(out),
               "--owned"]
    done = subprocess.run(command, cwd=paths.ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f"the quantization study's run {out} failed (exit {done.returncode}):\n{tail}\n"
                           f"Rerun it alone with: {' '.join(command)}")
    return read_json(out / runs.METRICS_FILE)


def _run_row(scheme: str, seed: int, cfg: Config, metrics: dict[str, Any]) -> dict[str, Any]:
    breakdown = metrics["parameter_breakdown"]
    steps = max(1, int(metrics.get("global_steps") or 1))
    optimise = float(metrics["train_seconds"]) - float(metrics.get("validation_seconds") or 0.0)
    return {"scheme": scheme, "double": cfg.quantize_double, "seed": seed, "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"], "trainable_params": metrics["trainable_params"],
            "base_bytes": breakdown.get("base_bytes"), "base_bytes_fp32": breakdown.get("base_bytes_fp32"),
            "process_peak_rss_bytes": metrics.get("process_peak_rss_bytes"),
            "process_rss_bytes": metrics.get("process_rss_bytes"),
            "peak_gpu_memory_gib": metrics.get("peak_gpu_memory_gib"), "seconds_per_step": optimise / steps,
            "train_seconds": metrics["train_seconds"], "global_steps": steps, "device": metrics.get("device"),
            "precision": metrics.get("precision"), "best_validation_accuracy": metrics.get("best_validation_accuracy")}


def run_study(cfg: Config, isolate: bool = True) -> dict[str, Any]:
    """Train (or reuse) every run of the study, pair each quantized scheme with full precision, write the result.

    ``isolate``: one process per run (the memory figures mean something); False trains in this process
    (the numbers are the same, the peak memory is then the process's whole history).
    """
    from ..core.runs import invalidate_results

    done = []
    plan = study_configs(cfg)
    invalidate_results(cfg.profile, "quantization")
    for i, (scheme, seed, variant) in enumerate(plan, 1):
        out = run_dir(cfg, scheme, seed)
        say(f"quantization {i}/{len(plan)}: {scheme} seed {seed}")
        if isolate:
            metrics = train_isolated(variant, out)
        else:
            from ..core.train import train_owned

            metrics = train_owned(variant, out)
        done.append((scheme, seed, variant, out, metrics))
    result = summarise(cfg, done, isolate)
    write_json(result, paths.results_dir(cfg.profile) / STUDY_FILE)
    return result


def summarise(cfg: Config, done: list[tuple[str, int, Config, Path, dict[str, Any]]], isolate: bool) -> dict[str, Any]:
    """The study's result from its complete runs ``(scheme, seed, config, run dir, metrics)``, reference first.

    Separate from training so that the findings (``reporting.findings``) compute the same result from archived runs.
    """
    rows = [_run_row(scheme, seed, variant, metrics) for scheme, seed, variant, _, metrics in done]
    run_dirs: dict[str, list[Path]] = {}
    for scheme, _, _, out, _ in done:
        run_dirs.setdefault(scheme, []).append(out)
    arms = [run_arm(scheme, dirs, [r["seed"] for r in rows if r["scheme"] == scheme]) for scheme, dirs in run_dirs.items()]
    study = compare(arms, REFERENCE, cfg.seed, "the quantization study")
    comparisons = [{"scheme": arm["name"], "mean_difference": arm["vs_reference"]["mean"],
                    "bootstrap_ci": arm["vs_reference"]["bootstrap_ci"],
                    "mcnemar_per_seed": arm["vs_reference"]["mcnemar_per_seed"]} for arm in study["arms"][1:]]
    return {"profile": cfg.profile, "settings": {"schemes": list(run_dirs), "seeds": len(run_dirs[REFERENCE]),
                                                 "double": cfg.quantize_double, "model_name": cfg.model_name,
                                                 "isolated": isolate},
            "n_eval": study["n_eval"], "runs": rows, "comparisons": comparisons}


QUANTIZATION_RUN = re.compile(r"runs/quantization/(?P<scheme>\w+)/seed(?P<seed>\d+)$")


def archived_result(profile: str) -> dict[str, Any] | None:
    """The study's result computed from the runs archived in ``archive/<profile>`` as :func:`run_study` computes it
    (the generated findings and ``reproduce`` read it); None while a scheme or a seed is not archived."""
    from ..core.config import from_dict
    from ..core.archive import archived_runs, read_entry

    found = []
    for rel, entry in archived_runs(profile).items():
        match = QUANTIZATION_RUN.match(rel)
        if match:
            record = read_entry(entry, "run.json")
            found.append((match["scheme"], int(match["seed"]), from_dict(record["config"]), entry,
                          read_entry(entry, "metrics.json")))
    if not found:
        return None
    cfg = found[0][2]  # a run's configuration holds the study's own keys: the schemes in the study's order
    order = {scheme: i for i, scheme in enumerate(schemes(cfg))}
    seeds = sorted({f[1] for f in found})
    if {f[0] for f in found} != set(order) or len(found) != len(order) * len(seeds):
        return None
    found.sort(key=lambda f: (order[f[0]], f[1]))
    return summarise(cfg.replace(seed=seeds[0]), found, isolate=True)


# --------------------------------------------------------------------------- reading the result
MIB = 2 ** 20


def summary_frame(result: dict[str, Any]) -> pd.DataFrame:
    """One row per scheme: mean accuracy over seeds, the paired difference to full precision with its interval
    over seeds and test rows, McNemar's test at every seed, the base's memory, the process's peak, seconds per
    step."""
    runs_ = pd.DataFrame(result["runs"])
    by = {c["scheme"]: c for c in result["comparisons"]}
    rows = []
    for scheme, group in runs_.groupby("scheme", sort=False):
        comp = by.get(scheme)
        rows.append({
            "scheme": scheme, "label": scheme_label(scheme, bool(group["double"].iloc[0])), "seeds": len(group),
            "accuracy": group["accuracy"].mean(), "accuracy_sd": group["accuracy"].std(ddof=1) if len(group) > 1 else 0.0,
            "difference": comp["mean_difference"] if comp else 0.0,
            "ci_low": comp["bootstrap_ci"][0] if comp else None, "ci_high": comp["bootstrap_ci"][1] if comp else None,
            "mcnemar_per_seed": comp["mcnemar_per_seed"] if comp else None,
            "base_mib": group["base_bytes"].iloc[0] / MIB, "base_fp32_mib": group["base_bytes_fp32"].iloc[0] / MIB,
            "peak_rss_mib": (group["process_peak_rss_bytes"].max() / MIB
                             if group["process_peak_rss_bytes"].notna().all() else None),
            "end_rss_mib": (group["process_rss_bytes"].max() / MIB
                            if "process_rss_bytes" in group and group["process_rss_bytes"].notna().all() else None),
            "peak_gpu_gib": group["peak_gpu_memory_gib"].max() if group["peak_gpu_memory_gib"].notna().any() else None,
            "seconds_per_step": group["seconds_per_step"].median(), "trainable_params": int(group["trainable_params"].iloc[0])})
    return pd.DataFrame(rows)


def table(result: dict[str, Any], timing: bool = True) -> Table:
    """The summary for reading (percent and points with two decimals, memory in MiB): the notebook, the book
    and the report show it. ``timing`` False leaves out seconds per step, which compare only between runs
    measured side by side (the findings read runs an archive gathered over several sittings)."""
    frame = summary_frame(result)
    tests = next((t for t in frame["mcnemar_per_seed"] if t), [])
    shown = pd.DataFrame({
        "base": frame["label"], "seeds": frame["seeds"],
        "accuracy %": [pct(a) for a in frame["accuracy"]],
        "vs full, pts [95% CI]": [_diff_text(r) for r in frame.itertuples()],
        mcnemar_header(tests): [pvalues_by_seed(t) if t else "" for t in frame["mcnemar_per_seed"]],
        "base MiB": [mib(m) for m in frame["base_mib"]],
        "RSS peak / end MiB": [f"{_mib(p)} / {_mib(e)}" for p, e in zip(frame["peak_rss_mib"], frame["end_rss_mib"])],
        "s/step": [f"{s:.2f}" for s in frame["seconds_per_step"]],
    })
    return Table.of_frame(shown if timing else shown.drop(columns=["s/step"]))


def _mib(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:,.0f}"


def mib(value: float) -> str:
    """A base's size: one decimal below 100 MiB (a tiny model's base is under 1 MiB), none above."""
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _diff_text(row: Any) -> str:
    if missing(row.ci_low):
        return "reference"
    return f"{points(row.difference)} {interval(row.ci_low, row.ci_high, signed=True)}"


def sentence(result: dict[str, Any], timing: bool = True) -> str:
    """What the study says, generated: each quantized scheme's memory saving and whether its accuracy cost is
    resolved (``timing``: and its seconds per step against full precision, see :func:`table`)."""
    frame = summary_frame(result)
    ref = frame.iloc[0]
    parts = []
    for row in frame.iloc[1:].itertuples():
        resolved = direction(row.ci_low, row.ci_high) != NOT_RESOLVED
        word = (("resolved" if resolved else "not resolved") if can_conclude(int(ref.seeds))
                else f"{int(ref.seeds)} seed(s): a screen, no verdict")
        cost = (f"changes accuracy by {points(row.difference)} points "
                f"({interval(row.ci_low, row.ci_high, signed=True)}, {word})")
        speed = f", at {row.seconds_per_step / ref.seconds_per_step:.2f}x the seconds per step" if timing else ""
        parts.append(f"{row.label} holds the frozen base in {mib(row.base_mib)} MiB instead of {mib(ref.base_mib)} "
                     f"({100 * (1 - row.base_mib / ref.base_mib):.0f}% less), {cost}{speed}")
    seeds = int(ref.seeds)
    return (f"Over {seeds} seed{'s' if seeds > 1 else ''} on the same {num(result['n_eval'])} test rows "
            f"({int(100 * CONFIDENCE)}% intervals over {'seeds and ' if seeds > 1 else ''}test rows): "
            + "; ".join(parts) + ".") if parts else "Only the full-precision reference was run."


def macros(result: dict[str, Any]) -> dict[str, str]:
    """The report's numbers (``\\Quant...``), one per scheme and quantity."""
    frame = summary_frame(result)
    out = {"QuantSentence": sentence(result), "QuantTestRows": num(result["n_eval"]),
           "QuantSeeds": str(result["settings"]["seeds"])}
    for row in frame.itertuples():
        name = {"none": "None", "nf4": "Nfour", "fp4": "Ffour", "int8": "Int"}[row.scheme]
        out[f"Quant{name}Accuracy"] = pct(row.accuracy)
        out[f"Quant{name}BaseMiB"] = mib(row.base_mib)
        out[f"Quant{name}SecondsPerStep"] = f"{row.seconds_per_step:.2f}"
        if row.scheme != REFERENCE:
            out[f"Quant{name}Difference"] = points(row.difference)
            out[f"Quant{name}CI"] = interval(row.ci_low, row.ci_high, signed=True)
    return out


def runs_frame(result: dict[str, Any]) -> pd.DataFrame:
    """The study's runs: base, seed, accuracy, memory (MiB), seconds per step (``scheme`` keeps the key)."""
    frame = pd.DataFrame(result["runs"])
    end = frame["process_rss_bytes"] if "process_rss_bytes" in frame else pd.Series([None] * len(frame))
    return pd.DataFrame({
        "base": [scheme_label(s, d) for s, d in zip(frame["scheme"], frame["double"])], "scheme": frame["scheme"],
        "seed": frame["seed"], "accuracy": frame["accuracy"],
        "base MiB": frame["base_bytes"] / MIB, "base fp32 MiB": frame["base_bytes_fp32"] / MIB,
        "peak RSS MiB": frame["process_peak_rss_bytes"] / MIB, "end RSS MiB": end / MIB,
        "s / step": frame["seconds_per_step"]})


def runs_table(result: dict[str, Any]) -> pd.DataFrame:
    """:func:`runs_frame` for reading: percent with two decimals, MiB, seconds with two decimals (fits a page)."""
    frame = runs_frame(result)
    return pd.DataFrame({
        "base": frame["base"], "seed": frame["seed"], "accuracy %": [pct(a) for a in frame["accuracy"]],
        "base MiB (fp32)": [f"{mib(m)} ({mib(f)})" for m, f in zip(frame["base MiB"], frame["base fp32 MiB"])],
        "RSS peak / end MiB": [f"{_mib(p)} / {_mib(e)}" for p, e in zip(frame["peak RSS MiB"], frame["end RSS MiB"])],
        "s/step": [f"{s:.2f}" for s in frame["s / step"]]})
