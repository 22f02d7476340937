"""Notebook 04's findings as readers see them: the ablation grid, the rate search, the seed study.

Tables (declared once, rendered by :mod:`lora_agnews.core.paths` for the notebook, the book and the report), the sentences
that read the numbers, and the macros, all from ``ablation.json``, ``learning_rates.json`` and ``statistics.json``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from ..studies.comparison import (CONFIDENCE, HIGHER, LOWER, direction as resolve, mcnemar_header, pvalues_by_seed,
                                  pvalues_sentence)
from ..studies.experiments import by_validation, grid_settings, setting_run_name
from ..studies.yardsticks import MIN_SEEDS, can_conclude
from .text import describe_setting, method_label, several_methods, short_targets
from ..core.paths import Column, Table, dec, interval, missing, num, or_dash, p_text, pct, points, pvalue, two_decimals


def _size(row: Mapping[str, Any]) -> Any:
    """A grid row's size: its rank (LoRA-like), ``20 tok`` (prompt tuning) or a dash (size-less methods)."""
    key = row.get("size_key") if "size_key" in row else "lora_r"
    if missing(key):
        return "–"
    return f"{int(row['prompt_tokens'])} tok" if key == "prompt_tokens" else int(row["lora_r"])


def ablation_table(table: pd.DataFrame, seeded: Mapping[str, int] | None = None) -> Table:
    """The grid as the book and the report show it: a screen, one row per setting, ranked by validation accuracy
    (``experiments.by_validation``, the rule that picks the seed study's settings).

    Every setting ran with one seed, so its test accuracy is labelled as one seed's, with the 95% interval over test
    rows, and no column compares settings: a verdict needs :data:`lora_agnews.studies.yardsticks.MIN_SEEDS` seeds on
    the same rows, which the seed study gives (``seeded``: grid name -> the seeds it ran there, from
    :func:`seed_study_names`; shown in its own column). Narrow enough for the book's column (about 690 px) and the
    report's page with the whole method family: a grid of several methods names each setting in one cell (``PiSSA
    r=18``, ``prompt tuning 2 tok``, ``BitFit``), a LoRA-only grid keeps its plain ``r``; the targets, head and rate
    columns appear only where the settings differ in them; a variant over the budget says so in its accuracy cell.
    Beside them: the training seconds per run (the cost beside the parameters); the Pareto front, a comparison of
    single-seed accuracies, is left to the figure. Macro F1 stays in ``ablation.json``; the rate search has its own
    table (:func:`rates_table`).
    """
    frame = by_validation(grid_settings(table))
    col = lambda name: frame[name] if name in frame else pd.Series([math.nan] * len(frame), index=frame.index)  # noqa: E731
    rows = [r for _, r in frame.iterrows()]
    several = several_methods(frame)
    ranked = frame["best_validation_accuracy"].notna() & frame["within_budget"].astype(bool)
    values: dict[str, Any] = {"rank": [str(i) if ok else "–" for i, ok in enumerate(ranked, 1)]}
    values.update({"setting": [_setting(r) for r in rows]} if several else {"r": [int(r["lora_r"]) for r in rows]})
    columns = [Column("rank", tex="Rank"), Column("setting", tex="Setting", align="l") if several else Column("r")]
    targets = [_targets(r) for r in rows]
    if len({t for t in targets if t != "–"}) > 1:
        values["targets"] = targets
        columns.append(Column("targets", tex="Targets", align="l"))
    if frame["head"].nunique() > 1:
        values["head"] = list(frame["head"])
        columns.append(Column("head", tex="Head", align="l"))
    if "learning_rate" in frame and frame["learning_rate"].nunique() > 1:
        values["rate"] = [f"{x:g}" for x in frame["learning_rate"]]
        columns.append(Column("rate", tex="Rate"))
    seeded = dict(seeded or {})
    shown = pd.DataFrame({
        **values, "trainable": list(frame["trainable_params"]),
        "val. %": list((100 * pd.to_numeric(col("best_validation_accuracy"), errors="coerce")).round(2)),
        ACCURACY: [_accuracy_cell(a, lo, hi, w) for a, lo, hi, w in
                   zip(col("accuracy"), col("ci_low"), col("ci_high"), frame["within_budget"].astype(bool))],
        SEEDED: [f"{seeded[n]} seeds" if n in seeded else "" for n in frame["name"]],
        "train s": list(map(or_dash(lambda x: num(round(float(x)))), col("train_seconds"))),
    })
    columns += [Column("trainable", tex="Trainable", fmt=num), Column("val. %", tex="Val. (%)", fmt=or_dash(two_decimals)),
                Column(ACCURACY, tex="Test (%), one seed [95% CI]"), Column(SEEDED, tex="Seed study"),
                Column("train s", tex="Train s")]
    return Table.of(columns, shown.to_dict(orient="records"))


ACCURACY = "test %, single seed [95% CI]"
SEEDED = "seed study"  # the seeds a grid setting ran in the seed study, where the verdicts are


def seed_study_names(stats: Mapping[str, Any] | None) -> dict[str, int]:
    """Grid name -> the seeds it ran in the seed study, for every setting of the study (its run name)."""
    return {setting_run_name(s["name"]): len(s["seeds"]) for s in (stats or {}).get("settings", [])}


def _setting(row: Mapping[str, Any]) -> str:
    """``PiSSA r=18``, ``prompt tuning 2 tok``, ``BitFit``: a grid setting's method and size in one cell."""
    size = _size(row)
    label = method_label(row)
    if size == "–":
        return label
    return f"{label} {size}" if isinstance(size, str) else f"{label} r={size}"


def _targets(row: Mapping[str, Any]) -> str:
    from ..core.methods import METHODS

    return "–" if METHODS[row.get("method") or "lora"].whole_encoder else short_targets(row["lora_targets"])


def _accuracy_cell(acc: Any, low: Any, high: Any, within: bool) -> str:
    """``90.88 [88.9, 92.9]``; ``over budget`` for a variant refused before training; ``--`` if untrained."""
    if not within:
        return "over budget"
    if missing(acc):
        return "--"
    return pct(acc) + ("" if missing(low) or missing(high) else " " + interval(low, high, digits=1))


SCREEN_SHOWN = 3  # settings the screen's sentence names, best validation first


def ablation_sentence(table: pd.DataFrame) -> str:
    """The grid as a screen, in generated words: how many settings ran once each, the first by validation accuracy
    with their single-seed test accuracy, and that no difference between them is concluded here."""
    frame = grid_settings(table)
    frame = by_validation(frame[frame["accuracy"].notna()])
    if frame.empty:
        return "No variant was trained, so there is nothing to screen."
    several = several_methods(frame)
    top = [f"{i}. {_variant(r, several)} ({num(r['trainable_params'])} parameters): validation "
           f"{pct(r['best_validation_accuracy'])}%, test {pct(r['accuracy'])}% (one seed)"
           for i, (_, r) in enumerate(frame.head(SCREEN_SHOWN).iterrows(), 1)]
    return (f"A screen: each of the {len(frame)} settings ran once (one seed), ranked by validation accuracy; its test "
            f"accuracy is one seed's and is shown, not compared, since one seed cannot tell a difference between "
            f"settings from a setting's own spread over seeds. By validation: " + "; ".join(top) + ". Which setting "
            f"is ahead is said only where settings ran at least {MIN_SEEDS} seeds on the same rows (the seed study).")


def rates_table(choices: Sequence[Mapping[str, Any]]) -> Table:
    """The learning-rate search (``experiments.rate_choices``): per method and rate, validation and test accuracy
    (the run names are in learning_rates.json)."""
    columns = [Column("method"), Column("rate", fmt=lambda r: f"{r:g}"), Column("validation (%)", fmt=or_dash(pct)),
               Column("test (%)", fmt=or_dash(pct)), Column("pick")]
    rows = []
    for choice in choices:
        for r in choice["rates"]:
            mark = "picked and used" if r["rate"] == choice["picked"] == choice["used"] else \
                "picked" if r["rate"] == choice["picked"] else "used" if r["rate"] == choice["used"] else ""
            rows.append((method_label(choice), r["rate"], r["validation"], r["test"], mark))
    return Table.of(columns, rows)


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
            parts.append(f"{label} ran at {c['used']:g}, not at {c['picked']:g}, the best validation accuracy of "
                         f"{tried}: the profile's method_learning_rates sets {c['used']:g}, so every {label} run here "
                         f"trained at {c['used']:g} (-p method_learning_rates {c['method']}={c['picked']:g} trains at "
                         f"the pick).")
    if not parts:
        return ""
    return ("Learning rates searched on validation accuracy, one seed each at the method's smallest grid size: "
            + " ".join(parts))


def rates_markdown(choices: Sequence[Mapping[str, Any]], learning_rate: float) -> str:
    """Notebook 04's rate-search section: the table and the sentence, or why there is none."""
    if not choices:
        return ("This profile picks no method's rate (`lr_candidates` is empty): every method trains at the "
                f"profile's learning_rate ({learning_rate:g}) unless `method_learning_rates` names its own.")
    return rates_table(choices).markdown() + "\n\n" + rate_sentence(choices)


def _variant(row: Mapping[str, Any], several: bool = False) -> str:
    return describe_setting(row, name_lora=several)


def describe_config(entry: Mapping[str, Any]) -> str:
    """``r=8, Q,K,V,emb, default head`` from a statistics entry's config."""
    return describe_setting(entry["config"])


def _mean_seconds(values: Sequence[Any] | None) -> str:
    known = [float(v) for v in values or [] if v is not None]
    return f"{sum(known) / len(known):,.0f}" if known else "--"


def statistics_table(stats: Mapping[str, Any], timing: bool = True) -> Table:
    """The seed study: per setting, the configuration, parameters, mean ± std over seeds with the interval of the
    mean over seeds and test rows, the paired difference to the baseline with its interval over seeds and rows,
    McNemar's p against the baseline at every seed (the header names them), and the mean training seconds per run
    (``timing``: runs measured side by side, in one sitting)."""
    level = int(100 * stats.get("confidence", CONFIDENCE))
    n_seeds = len(stats["settings"][0]["seeds"])
    accuracy = f"accuracy (%), mean ± std over {n_seeds} seeds [{level}% CI]"
    tests = next((s["vs_baseline"]["mcnemar_per_seed"] for s in stats["settings"] if s["role"] != "baseline"), [])
    columns = [Column("", align="l"), Column("configuration", tex="Configuration", align="l"),
               Column("trainable", tex="Trainable"), Column(accuracy, tex=accuracy.replace("accuracy", "Accuracy")),
               Column("vs baseline (points)"), Column(mcnemar_header(tests)), Column("train s/run", tex="Train s/run")]
    rows = []
    for s in stats["settings"]:
        lo, hi = s["bootstrap_ci"]
        versus = s.get("vs_baseline")
        if s["role"] == "baseline":
            gap, p = "--", "--"
        else:
            gap = (f"{points(versus['mean'])} {interval(*versus['bootstrap_ci'], signed=True)}"
                   if "bootstrap_ci" in versus else "--")
            p = pvalues_by_seed(versus["mcnemar_per_seed"])
        rows.append((s["role"], describe_config(s), num(s["trainable_params"]),
                     f"{pct(s['mean'])} ± {pct(s['std'])} {interval(lo, hi)}", gap, p,
                     _mean_seconds(s.get("train_seconds"))))
    if not timing:
        columns, rows = columns[:-1], [row[:-1] for row in rows]
    return Table.of(columns, rows, index="")


def mcnemar_frame(stats: Mapping[str, Any]) -> pd.DataFrame:
    """McNemar's test of the chosen setting against the baseline, one column per seed."""
    tests = stats.get("mcnemar_per_seed") or [stats["mcnemar"]]
    fields = [("b: chosen right, baseline wrong", lambda m: str(m["b"])),
              ("c: chosen wrong, baseline right", lambda m: str(m["c"])),
              ("test statistic", lambda m: dec(m["statistic"])), ("p-value", lambda m: pvalue(m["p_value"])),
              ("method", lambda m: m.get("method", "McNemar"))]
    columns = {(f"seed {m['seed']}" if "seed" in m else "value"): [show(m) for _, show in fields] for m in tests}
    return pd.DataFrame(columns, index=pd.Index([name for name, _ in fields], name="McNemar's test"))


def study_sentence(stats: Mapping[str, Any], name_settings: bool = False) -> str:
    """Every setting of the seed study against the baseline, in words generated from the paired intervals.

    Two settings read as the chosen one against the baseline (the book beside its table); ``name_settings``
    describes each setting in the sentence instead (text that stands without the table)."""
    settings = stats["settings"]
    if len(settings) == 2 and not name_settings:
        return comparison_sentence(stats)
    baseline = next(s for s in settings if s["role"] == "baseline")
    parts = []
    for s in settings:
        if s["role"] == "baseline":
            continue
        v = s["vs_baseline"]
        lo, hi = v["bootstrap_ci"]
        verdict = ({HIGHER: "ahead of", LOWER: "behind"}.get(resolve(lo, hi), "not distinguishable from")
                   if can_conclude(len(s["seeds"])) else f"no verdict ({len(s['seeds'])} seed(s), fewer than {MIN_SEEDS}) against")
        parts.append(f"{s['role']} ({describe_config(s)}, {num(s['trainable_params'])} parameters): "
                     f"{pct(s['mean'])} ± {pct(s['std'])}%, {points(v['mean'])} points "
                     f"{interval(lo, hi, signed=True)}, {verdict} the baseline")
    return (f"Over {len(baseline['seeds'])} seeds on the same {num(stats['n_eval'])} test rows, against the baseline "
            f"({describe_config(baseline)}, {num(baseline['trainable_params'])} parameters, {pct(baseline['mean'])} ± "
            f"{pct(baseline['std'])}%): " + "; ".join(parts) + f". Ahead or behind, only with at least {MIN_SEEDS} "
            f"seeds: the paired {int(100 * stats.get('confidence', CONFIDENCE))}% interval over seeds and test rows "
            f"excludes zero.")


def comparison_sentence(stats: Mapping[str, Any]) -> str:
    """What the statistics say, in words generated from the numbers (no hand-written claim): the verdict is the
    paired interval's over seeds and test rows; McNemar's test is stated for every seed, none singled out."""
    chosen, baseline = stats["chosen"], stats["baseline"]
    diff = 100 * (chosen["mean"] - baseline["mean"])
    direction = "higher" if diff > 0 else ("lower" if diff < 0 else "the same as")
    amount = f"{abs(diff):.2f} points {direction} than" if diff else "the same as"
    text = f"Averaged over {len(chosen['seeds'])} seeds, the chosen configuration's test accuracy is {amount} the baseline's."
    if "difference" in stats:
        lo, hi = stats["difference"]["bootstrap_ci"]
        verdict = {HIGHER: "ahead of", LOWER: "behind"}.get(resolve(lo, hi), "not distinguishable from")
        text += (f" The paired {int(100 * stats.get('confidence', CONFIDENCE))}% interval of the difference over seeds "
                 f"and test rows, {interval(lo, hi)} points, {'includes' if lo <= 0 <= hi else 'excludes'} zero: the "
                 f"chosen configuration is {verdict} the baseline.")
    tests = stats.get("mcnemar_per_seed") or [stats["mcnemar"]]
    return text + f" McNemar's test on each seed's paired predictions: {pvalues_sentence(tests)}."


def ablation_macros(table: pd.DataFrame, stats: Mapping[str, Any],
                    rates: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    table = grid_settings(table)
    trained = table[table["accuracy"].notna()]
    top = by_validation(trained).iloc[0] if not trained.empty else None  # the screen's first, by validation
    chosen, baseline, m = stats["chosen"], stats["baseline"], stats["mcnemar"]
    values: dict[str, Any] = {
        "ablation_variants": len(table), "ablation_trained": len(trained),
        "ablation_over_budget": int((~table["within_budget"].astype(bool)).sum()),
        "ablation_top_name": top["name"] if top is not None else "none",
        "ablation_top_validation": pct(top["best_validation_accuracy"]) if top is not None else "n/a",
        "ablation_top_accuracy": pct(top["accuracy"]) if top is not None else "n/a",
        "ablation_top_params": num(top["trainable_params"]) if top is not None else "n/a",
        "min_seeds": MIN_SEEDS,
        "n_seeds": len(chosen["seeds"]), "seed_eval_examples": num(stats["n_eval"]),
        "confidence_level": f"{int(100 * stats.get('confidence', CONFIDENCE))}",
        "mcnemar_b": m["b"], "mcnemar_c": m["c"], "mcnemar_statistic": dec(m["statistic"]),
        "mcnemar_p": pvalue(m["p_value"]), "mcnemar_p_text": p_text(m["p_value"]), "mcnemar_method": m.get("method", "McNemar"),
        "mcnemar_seed": str(m.get("seed", "")),
        "mcnemar_per_seed": pvalues_sentence(stats.get("mcnemar_per_seed") or [m]),
        "comparison_sentence": comparison_sentence(stats), "ablation_sentence": ablation_sentence(table),
        "ablation_rates_sentence": rate_sentence(rates),
        "study_sentence": study_sentence(stats),
        "study_extra_sentence": study_sentence(stats) if len(stats["settings"]) > 2 else "",
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


def seeded_settings(stats: Mapping[str, Any], quantization: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every setting of the profile run with at least :data:`MIN_SEEDS` seeds on the same rows (the only ones a
    verdict is drawn for): the seed study's settings, and the quantization study's bases where it ran that many."""
    out = [{"study": "seed study", "setting": f"{s['role']}: {describe_config(s)}", "seeds": len(s["seeds"]),
            "rows": stats["n_eval"]} for s in stats["settings"] if can_conclude(len(s["seeds"]))]
    seeds = int((quantization or {}).get("settings", {}).get("seeds") or 0)
    if quantization and can_conclude(seeds):
        from ..studies.quantize_study import scheme_label

        double = bool(quantization["settings"].get("double"))
        out += [{"study": "quantization study", "setting": scheme_label(name, double), "seeds": seeds,
                 "rows": quantization["n_eval"]} for name in quantization["settings"].get("schemes", [])]
    return out


def seeded_sentence(stats: Mapping[str, Any], quantization: Mapping[str, Any] | None = None) -> str:
    """Which settings ran at least :data:`MIN_SEEDS` seeds on the same rows, in generated words."""
    found = seeded_settings(stats, quantization)
    if not found:
        return (f"No setting of this profile ran {MIN_SEEDS} or more seeds on the same rows, so no comparison here "
                f"carries a verdict: every difference is a screen.")
    by_study: dict[str, list[dict[str, Any]]] = {}
    for f in found:
        by_study.setdefault(f["study"], []).append(f)
    parts = [f"the {study} ({'; '.join(f['setting'] for f in fs)}; {fs[0]['seeds']} seeds each on the same "
             f"{num(fs[0]['rows'])} test rows)" for study, fs in by_study.items()]
    return (f"Settings run with at least {MIN_SEEDS} seeds on the same rows, the only ones a verdict is drawn for: "
            + " and ".join(parts) + ". Every other comparison rests on fewer seeds and is a screen.")
