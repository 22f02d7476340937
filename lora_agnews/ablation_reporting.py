"""Notebook 04's findings as readers see them: the ablation grid, the rate search, the seed study.

Tables (the notebook's frame, the book's Markdown rows, the report's tabular), the sentences that read
the numbers, and the macros, all from ``ablation.json``, ``learning_rates.json`` and ``statistics.json``.
Formatting helpers shared with the other notebooks live in :mod:`reporting`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from . import artifacts
from .artifacts import num, pct, pvalue
from .experiments import grid_front, grid_settings
from .reporting import dec, describe_setting, markdown_table, method_label, p_text, several_methods, short_targets


def _signed_points(x: Any) -> str:
    return "--" if x is None or pd.isna(x) else f"{100 * float(x):+.2f}"


def _size(row: Mapping[str, Any]) -> Any:
    """A grid row's size: its rank (LoRA-like), ``20 tok`` (prompt tuning) or a dash (size-less methods)."""
    key = row.get("size_key") if "size_key" in row else "lora_r"
    if key is None or (isinstance(key, float) and math.isnan(key)):
        return "–"
    return f"{int(row['prompt_tokens'])} tok" if key == "prompt_tokens" else int(row["lora_r"])


def _seconds(x: Any) -> Any:
    return math.nan if x is None or pd.isna(x) else int(round(float(x)))


def ablation_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The ablation table as the book and the report show it: one row per grid setting, sorted by size.

    Narrow enough for the book's column (about 690 px) and the report's page with the whole method family:
    a grid of several methods names each setting in one cell (``PiSSA r=18``, ``prompt tuning 2 tok``,
    ``BitFit``), a LoRA-only grid keeps its plain ``r``; the targets, head and rate columns appear only where
    the settings differ in them; the test accuracy carries its 95% interval and the gap to the best its
    paired interval (one decimal: 800 test rows resolve nothing finer); a variant over the budget says so
    in its accuracy cell. Beside them: the validation accuracy that picks the seed study's settings and the
    training seconds per run (the cost beside the parameters). Macro F1 stays in ``ablation.json``; the
    rate search has its own table (:func:`rate_rows`).
    """
    frame = grid_settings(table).copy()
    if "pareto" not in frame:
        frame["pareto"] = grid_front(frame)
    frame = frame.sort_values(["trainable_params"], kind="stable")
    col = lambda name: frame[name] if name in frame else pd.Series([math.nan] * len(frame), index=frame.index)  # noqa: E731
    rows = [r for _, r in frame.iterrows()]
    columns: dict[str, Any] = ({"setting": [_setting(r) for r in rows]} if several_methods(frame)
                               else {"r": [int(r["lora_r"]) for r in rows]})
    targets = [_targets(r) for r in rows]
    if len({t for t in targets if t != "–"}) > 1:
        columns["targets"] = targets
    if frame["head"].nunique() > 1:
        columns["head"] = list(frame["head"])
    if "learning_rate" in frame and frame["learning_rate"].nunique() > 1:
        columns["rate"] = [f"{x:g}" for x in frame["learning_rate"]]
    best = col("best").fillna(False).astype(bool)
    shown = pd.DataFrame({
        **columns, "trainable": list(frame["trainable_params"]),
        ACCURACY: [_accuracy_cell(a, lo, hi, w) for a, lo, hi, w in
                   zip(col("accuracy"), col("ci_low"), col("ci_high"), frame["within_budget"].astype(bool))],
        "vs best (points)": ["best" if b else _gap_cell(d, lo, hi)
                             for d, lo, hi, b in zip(col("diff_to_best"), col("diff_ci_low"), col("diff_ci_high"), best)],
        "val. %": list((100 * pd.to_numeric(col("best_validation_accuracy"), errors="coerce")).round(2)),
        "train s": [_seconds_text(x) for x in col("train_seconds")],
        "Pareto": ["yes" if p else "" for p in frame["pareto"].astype(bool)],
    })
    return shown.reset_index(drop=True)


ACCURACY = "test % [95% CI]"


def _setting(row: Mapping[str, Any]) -> str:
    """``PiSSA r=18``, ``prompt tuning 2 tok``, ``BitFit``: a grid setting's method and size in one cell."""
    size = _size(row)
    label = method_label(row)
    if size == "–":
        return label
    return f"{label} {size}" if isinstance(size, str) else f"{label} r={size}"


def _targets(row: Mapping[str, Any]) -> str:
    from .registry import METHODS

    return "–" if METHODS[row.get("method") or "lora"].whole_encoder else short_targets(row["lora_targets"])


def _accuracy_cell(acc: Any, low: Any, high: Any, within: bool) -> str:
    """``90.88 [88.9, 92.9]``; ``over budget`` for a variant refused before training; ``--`` if untrained."""
    if not within:
        return "over budget"
    if acc is None or pd.isna(acc):
        return "--"
    interval = "" if low is None or high is None or pd.isna(low) or pd.isna(high) else \
        f" [{100 * float(low):.1f}, {100 * float(high):.1f}]"
    return f"{100 * float(acc):.2f}{interval}"


def _gap_cell(diff: Any, low: Any, high: Any) -> str:
    """``-0.75 [-2.1, +0.6]``: the paired difference to the best setting, in points."""
    if diff is None or pd.isna(diff):
        return "--"
    return _signed_points(diff) + ("" if pd.isna(low) or pd.isna(high) else " " + _points_interval(low, high, digits=1))


def ablation_rows(table: pd.DataFrame) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The ablation table's header and formatted rows (the book's results page and the report's table):
    the columns of :func:`ablation_frame`, numbers written out."""
    frame = ablation_frame(table)
    header = list(frame.columns)
    rows = [tuple(_text(c, r[c]) for c in header) for _, r in frame.iterrows()]
    return header, rows


def _text(column: str, value: Any) -> Any:
    if column == "trainable":
        return num(value)
    if column == "val. %":
        return "--" if pd.isna(value) else f"{value:.2f}"
    return value


def _seconds_text(x: Any) -> str:
    seconds = _seconds(x)
    return "--" if pd.isna(seconds) else num(seconds)


def _points_interval(low: Any, high: Any, digits: int = 2) -> str:
    return "--" if pd.isna(low) or pd.isna(high) else f"[{100 * float(low):+.{digits}f}, {100 * float(high):+.{digits}f}]"


def ablation_sentence(table: pd.DataFrame) -> str:
    """Which variants really differ from the best one, in words generated from the paired intervals."""
    if "diff_ci_low" not in table or not table.get("best", pd.Series(dtype=bool)).astype(bool).any():
        return "No variant was trained, so there is nothing to compare."
    frame = grid_settings(table)
    frame = frame[frame["accuracy"].notna()]
    several = several_methods(frame)
    best = frame[frame["best"].astype(bool)].iloc[0]
    others = frame[~frame["best"].astype(bool)].sort_values("trainable_params")
    worse = [r for _, r in others.iterrows() if r["diff_ci_high"] < 0]
    tied = [r for _, r in others.iterrows() if r["diff_ci_high"] >= 0]
    text = f"The best variant is {_variant(best, several)} ({num(best['trainable_params'])} parameters) at {pct(best['accuracy'])}%."
    if worse:
        text += " Clearly worse (the paired 95% interval of the difference excludes zero): " + _gaps(worse, several)
    if tied:
        text += " Not distinguishable from it on these test rows (the interval includes zero): " + _gaps(tied, several)
    return text


def rate_rows(choices: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The learning-rate search (``experiments.rate_choices``): per method and rate, validation and test accuracy."""
    header = ["method", "rate", "validation (%)", "test (%)", "pick"]  # run names: learning_rates.json
    rows = []
    for choice in choices:
        for r in choice["rates"]:
            mark = "picked and used" if r["rate"] == choice["picked"] == choice["used"] else \
                "picked" if r["rate"] == choice["picked"] else "used" if r["rate"] == choice["used"] else ""
            rows.append((method_label(choice), f"{r['rate']:g}",
                         "--" if r["validation"] is None else pct(r["validation"]),
                         "--" if r["test"] is None else pct(r["test"]), mark))
    return header, rows


def rate_sentence(choices: Sequence[Mapping[str, Any]]) -> str:
    """How each method's learning rate was picked, with the validation accuracies, in words.

    Says plainly when a search is incomplete or the profile uses a rate other than the pick (someone edited
    ``method_learning_rates`` without rerunning the search, or new runs overturned it).
    """
    parts = []
    for c in choices:
        tried = ", ".join(f"{r['rate']:g} ({'--' if r['validation'] is None else pct(r['validation']) + '%'})"
                          for r in c["rates"])
        label = method_label(c)
        if c["picked"] is None:
            parts.append(f"{label}: no run of {tried} is complete yet, so it trains at {c['used']:g} unpicked.")
        elif not c["complete"]:
            parts.append(f"{label}: the search is incomplete ({tried}); it trains at {c['used']:g}.")
        elif c["agrees"]:
            edge = (" (the largest rate tried: a larger one might do better)"
                    if c["picked"] == max(r["rate"] for r in c["rates"]) else "")
            parts.append(f"{label} trains at {c['used']:g}, the best validation accuracy of {tried}{edge}.")
        else:
            parts.append(f"{label} trains at {c['used']:g}, but the best validation accuracy of {tried} is at "
                         f"{c['picked']:g}: set -p method_learning_rates {c['method']}={c['picked']:g} (the profile "
                         f"records the rate) or rerun the search.")
    if not parts:
        return ""
    return ("Learning rates picked on validation accuracy, one seed each at the method's smallest grid size: "
            + " ".join(parts))


def rates_markdown(choices: Sequence[Mapping[str, Any]], learning_rate: float) -> str:
    """Notebook 04's rate-search section: the table and the sentence, or why there is none."""
    if not choices:
        return ("This profile picks no method's rate (`lr_candidates` is empty): every method trains at the "
                f"profile's learning_rate ({learning_rate:g}) unless `method_learning_rates` names its own.")
    return markdown_table(*rate_rows(choices)) + "\n\n" + rate_sentence(choices)


def rate_tabular(choices: Sequence[Mapping[str, Any]]) -> str:
    header, rows = rate_rows(choices)
    return artifacts.latex_table(["Method", "Rate", "Validation (%)", "Test (%)", "Pick"], rows, align="lrrrl")


def _variant(row: Mapping[str, Any], several: bool = False) -> str:
    return describe_setting(row, name_lora=several)


def _gaps(rows: Sequence[Mapping[str, Any]], several: bool = False) -> str:
    """``r=2, Q,K,V, linear head, -2.00 points [-2.82, -1.21]; ...`` for the ablation sentence."""
    return "; ".join(f"{_variant(r, several)}, {_signed_points(r['diff_to_best'])} points "
                     f"{_points_interval(r['diff_ci_low'], r['diff_ci_high'])}" for r in rows) + "."


def ablation_tabular(table: pd.DataFrame) -> str:
    header, rows = ablation_rows(table)
    names = {"setting": "Setting", "r": "r", "targets": "Targets", "head": "Head", "rate": "Rate",
             "trainable": "Trainable", ACCURACY: "Test (%) [95% CI]", "vs best (points)": "vs best (points)",
             "val. %": "Val. (%)", "train s": "Train s", "Pareto": "Pareto"}
    align = "".join("l" if h in ("setting", "targets", "head") else "c" if h == "Pareto" else "r" for h in header)
    return artifacts.latex_table([names[h] for h in header], rows, align=align)


def best_ablation(table: pd.DataFrame) -> pd.Series | None:
    scored = grid_settings(table)
    scored = scored[scored["accuracy"].notna()]
    if scored.empty:
        return None
    return scored.sort_values(["accuracy", "trainable_params"], ascending=[False, True]).iloc[0]


def describe_config(entry: Mapping[str, Any]) -> str:
    """``r=8, Q,K,V,emb, default head`` from a statistics entry's config."""
    return describe_setting(entry["config"])


def study_settings(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The seed study's settings (chosen, baseline, grid variants), each with its comparison to the baseline.

    Older files hold chosen and baseline only, with the comparison at the top level: it is moved onto the
    chosen entry here, so every reader sees one shape.
    """
    if "settings" in stats:
        return list(stats["settings"])
    versus: dict[str, Any] = {"mcnemar_per_seed": [stats["mcnemar"]]}
    if "difference" in stats:
        versus.update(stats["difference"])
    return [dict(stats["chosen"], role="chosen", vs_baseline=versus), dict(stats["baseline"], role="baseline")]


def _mean_seconds(values: Sequence[Any] | None) -> str:
    known = [float(v) for v in values or [] if v is not None]
    return f"{sum(known) / len(known):,.0f}" if known else "--"


def statistics_rows(stats: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Header and rows of the seed study: per setting, the configuration, parameters, mean ± std over
    seeds, bootstrap interval, the paired difference to the baseline with its interval, McNemar's p
    against the baseline at the first seed, and the mean training seconds per run (shared by the
    notebook, the book and the report)."""
    level = int(100 * stats.get("confidence", 0.95))
    n_seeds = len(study_settings(stats)[0]["seeds"])
    header = ["", "configuration", "trainable", f"accuracy (%), mean ± std over {n_seeds} seeds [{level}% CI]",
              "vs baseline (points)", "McNemar p", "train s/run"]
    rows = []
    for s in study_settings(stats):
        lo, hi = s["bootstrap_ci"]
        versus = s.get("vs_baseline")
        if s["role"] == "baseline":
            gap, p = "--", "--"
        else:
            gap = (f"{_signed_points(versus['mean'])} {_points_interval(*versus['bootstrap_ci'])}"
                   if "bootstrap_ci" in versus else "--")
            p = pvalue(versus["mcnemar_per_seed"][0]["p_value"])
        rows.append((s["role"], describe_config(s), num(s["trainable_params"]),
                     f"{pct(s['mean'])} ± {pct(s['std'])} [{pct(lo)}, {pct(hi)}]", gap, p,
                     _mean_seconds(s.get("train_seconds"))))
    return header, rows


def statistics_frame(stats: Mapping[str, Any]) -> pd.DataFrame:
    """The seed study as the notebook shows it (see :func:`statistics_rows`)."""
    header, rows = statistics_rows(stats)
    return pd.DataFrame(rows, columns=header).set_index("")


def mcnemar_frame(stats: Mapping[str, Any]) -> pd.DataFrame:
    m = stats["mcnemar"]
    rows = [("b: chosen right, baseline wrong", str(m["b"])), ("c: chosen wrong, baseline right", str(m["c"])),
            ("test statistic", dec(m["statistic"])), ("p-value", pvalue(m["p_value"])),
            ("method", m.get("method", "McNemar")), ("seed", str(m.get("seed", "")))]
    return pd.DataFrame(rows, columns=["McNemar's test", "value"]).set_index("McNemar's test")


def statistics_tabular(stats: Mapping[str, Any]) -> str:
    header, rows = statistics_rows(stats)
    names = ["", "Configuration", "Trainable", header[3].replace("accuracy", "Accuracy"), "vs baseline (points)",
             "McNemar p", "Train s/run"]
    return artifacts.latex_table(names, rows, align="llrrrrr")


def study_sentence(stats: Mapping[str, Any]) -> str:
    """Every setting of the seed study against the baseline, in words generated from the paired intervals."""
    settings = study_settings(stats)
    if len(settings) == 2 or not any("vs_baseline" in s for s in settings):
        return comparison_sentence(stats)
    baseline = next(s for s in settings if s["role"] == "baseline")
    parts = []
    for s in settings:
        if s["role"] == "baseline":
            continue
        v = s["vs_baseline"]
        lo, hi = v["bootstrap_ci"]
        verdict = ("ahead of" if lo > 0 else "behind") if (lo > 0 or hi < 0) else "not distinguishable from"
        parts.append(f"{s['role']} ({describe_config(s)}, {num(s['trainable_params'])} parameters): "
                     f"{pct(s['mean'])} ± {pct(s['std'])}%, {_signed_points(v['mean'])} points "
                     f"{_points_interval(lo, hi)}, {verdict} the baseline")
    return (f"Over {len(baseline['seeds'])} seeds on the same {num(stats['n_eval'])} test rows, against the baseline "
            f"({describe_config(baseline)}, {num(baseline['trainable_params'])} parameters, {pct(baseline['mean'])} ± "
            f"{pct(baseline['std'])}%): " + "; ".join(parts) + ". A setting is ahead or behind only where the paired "
            f"95% interval of the difference excludes zero.")


def comparison_sentence(stats: Mapping[str, Any]) -> str:
    """What the statistics say, in words generated from the numbers (no hand-written claim)."""
    chosen, baseline, m = stats["chosen"], stats["baseline"], stats["mcnemar"]
    diff = 100 * (chosen["mean"] - baseline["mean"])
    direction = "higher" if diff > 0 else ("lower" if diff < 0 else "the same as")
    amount = f"{abs(diff):.2f} points {direction} than" if diff else "the same as"
    significant = m["p_value"] < 0.05
    verdict = ("significant at the 5% level" if significant else "not significant at the 5% level")
    text = (f"Averaged over {len(chosen['seeds'])} seeds, the chosen configuration's test accuracy is {amount} the "
            f"baseline's; on the paired predictions of seed {m.get('seed', chosen['seeds'][0])} that difference "
            f"is {verdict} (McNemar's test, p {p_text(m['p_value'])}).")
    if "difference" in stats:
        lo, hi = (100 * v for v in stats["difference"]["bootstrap_ci"])
        contains = lo <= 0 <= hi
        text += (f" The paired bootstrap 95% interval of the difference, [{lo:.2f}, {hi:.2f}] points, "
                 f"{'includes' if contains else 'excludes'} zero.")
    return text


def ablation_macros(table: pd.DataFrame, stats: Mapping[str, Any],
                    rates: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    table = grid_settings(table)
    trained = table[table["accuracy"].notna()]
    best = best_ablation(table)
    chosen, baseline, m = stats["chosen"], stats["baseline"], stats["mcnemar"]
    values: dict[str, Any] = {
        "ablation_variants": len(table), "ablation_trained": len(trained),
        "ablation_over_budget": int((~table["within_budget"].astype(bool)).sum()),
        "ablation_best_name": best["name"] if best is not None else "none",
        "ablation_best_accuracy": pct(best["accuracy"]) if best is not None else "n/a",
        "ablation_best_params": num(best["trainable_params"]) if best is not None else "n/a",
        "n_seeds": len(chosen["seeds"]), "seed_eval_examples": num(stats["n_eval"]),
        "confidence_level": f"{int(100 * stats.get('confidence', 0.95))}",
        "mcnemar_b": m["b"], "mcnemar_c": m["c"], "mcnemar_statistic": dec(m["statistic"]),
        "mcnemar_p": pvalue(m["p_value"]), "mcnemar_p_text": p_text(m["p_value"]), "mcnemar_method": m.get("method", "McNemar"),
        "comparison_sentence": comparison_sentence(stats), "ablation_sentence": ablation_sentence(table),
        "ablation_rates_sentence": rate_sentence(rates),
        "study_sentence": study_sentence(stats),
        "study_extra_sentence": study_sentence(stats) if len(study_settings(stats)) > 2 else "",
    }
    for key, entry in (("chosen", chosen), ("baseline", baseline)):
        lo, hi = entry["bootstrap_ci"]
        values.update({f"{key}_name": entry["name"], f"{key}_params": num(entry["trainable_params"]),
                       f"{key}_mean": pct(entry["mean"]), f"{key}_std": pct(entry["std"]),
                       f"{key}_ci_low": pct(lo), f"{key}_ci_high": pct(hi),
                       f"{key}_pooled": pct(entry["pooled_accuracy"])})
    if "difference" in stats:
        lo, hi = stats["difference"]["bootstrap_ci"]
        values.update({"difference_mean": pct(stats["difference"]["mean"]), "difference_ci_low": pct(lo),
                       "difference_ci_high": pct(hi)})
    return values
