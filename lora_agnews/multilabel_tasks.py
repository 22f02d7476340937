"""Where multi-label rows come from: a ``label,text`` directory whose cells hold ``a|b``, GoEmotions and
Reuters-21578 from the hub.

Rows end in the shape :mod:`lora_agnews.data` uses, with ``label`` a sorted tuple of label ids (possibly
empty) instead of one id; the task says ``multi_label=True``, and everything downstream reads the kind
from there (the model's ``problem_type``, the loss, the thresholds, the metrics, the adapter record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .multilabel import SEPARATOR, parse_cell
from .tasks import DataError

GO_EMOTIONS_LABELS: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief", "joy",
    "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral")
GO_EMOTIONS_HUB_ID = "google-research-datasets/go_emotions"
REUTERS_HUB_ID = "ucirvine/reuters21578"


def specs() -> dict[str, Any]:
    """The registry entries of the hub's multi-label tasks (merged into :data:`lora_agnews.sources.TASKS`).

    Reuters' labels are not listed: they are the ModApte topics with a document in both train and test
    (the usual 90), read from the data, so the registry cannot disagree with the release.
    """
    from .sources import TaskSpec

    return {
        "go_emotions": TaskSpec(
            "go_emotions", GO_EMOTIONS_LABELS, hub_id=GO_EMOTIONS_HUB_ID, hub_config="simplified", multi_label=True,
            source="GoEmotions (Demszky et al., ACL 2020; Reddit comments, 27 emotions and neutral, one or more "
                   "per comment; Apache-2.0), the hub's simplified configuration with its train and test splits."),
        "reuters21578": TaskSpec(
            "reuters21578", (), hub_id=REUTERS_HUB_ID, hub_config="ModApte", multi_label=True,
            source="Reuters-21578, Distribution 1.0 (Lewis 1997; Reuters newswire 1987; research use), the "
                   "ModApte split from the hub; labels: the topics with a document in both train and test; text = "
                   "title and body joined by one space; documents with no topic kept (an empty label set)."),
    }


# --------------------------------------------------------------------------- a local directory
def directory_frames(directory: Path, parts: dict[str, list[tuple[str, str, int]]],
                     labels: Sequence[str] | None) -> tuple[tuple[str, ...], dict[str, pd.DataFrame]]:
    """Label names (``labels`` from classes.txt, else the sorted names the cells use) and frames of label sets."""
    if labels is None:
        labels = tuple(sorted({n.strip() for rows in parts.values() for cell, _, _ in rows
                               for n in cell.split(SEPARATOR) if n.strip()}))
    index = {name: i for i, name in enumerate(labels)}
    frames = {}
    for split, rows in parts.items():
        sets = [parse_cell(cell, index, f"{directory / f'{split}.csv'} line {line}") for cell, _, line in rows]
        frames[split] = pd.DataFrame({"text": [t for _, t, _ in rows], "label": sets}, columns=["text", "label"])
    return tuple(labels), frames


# --------------------------------------------------------------------------- the hub
def _load_dataset(hub_id: str, config: str) -> Any:
    """``datasets.load_dataset`` with a configuration (a seam: tests replace it; the import is slow)."""
    from datasets import load_dataset

    return load_dataset(hub_id, config)


def go_emotions_frame(part: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """GoEmotions rows: ``labels`` is a list of ids into the ClassLabel's ``names``, re-indexed by name."""
    index = {n: i for i, n in enumerate(GO_EMOTIONS_LABELS)}
    unknown = sorted({names[int(i)] for ids in part["labels"] for i in ids} - set(index))
    if unknown:
        raise DataError(f"the hub's {GO_EMOTIONS_HUB_ID} has label(s) {', '.join(unknown)}, not among the 28 of the "
                        f"simplified configuration: the dataset changed; use a label,text directory instead.")
    sets = [tuple(sorted({index[names[int(i)]] for i in ids})) for ids in part["labels"]]
    from .sources import clean_text

    return pd.DataFrame({"text": [clean_text(t) for t in part["text"]], "label": sets})


def reuters_labels(train: pd.DataFrame, test: pd.DataFrame) -> tuple[str, ...]:
    """ModApte's usual label set: the topics with at least one document in train and one in test."""
    seen = [{t for topics in frame["topics"] for t in topics} for frame in (train, test)]
    return tuple(sorted(seen[0] & seen[1]))


def reuters_frame(part: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Reuters rows: title and body joined by one space; topics outside ``labels`` dropped from the set."""
    from .sources import clean_text

    index = {n: i for i, n in enumerate(labels)}
    titles = part["title"] if "title" in part.columns else [""] * len(part)
    texts = [clean_text(f"{title} {body}") for title, body in zip(titles, part["text"])]
    sets = [tuple(sorted({index[t] for t in topics if t in index})) for topics in part["topics"]]
    keep = [bool(t) for t in texts]
    return pd.DataFrame({"text": texts, "label": sets})[keep].reset_index(drop=True)


def load_hub_task(task: Any) -> Any:
    """GoEmotions (simplified) or Reuters-21578 (ModApte) from the hub as :class:`~lora_agnews.sources.TaskData`."""
    from .sources import Counts, TaskData

    try:
        ds = _load_dataset(task.hub_id, task.hub_config)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        raise DataError(f"could not load '{task.hub_id}' ({task.hub_config}) from the Hugging Face hub "
                        f"({type(exc).__name__}: {exc}). Without the hub, write its rows as a directory holding "
                        f"train.csv and test.csv (label,text; labels separated by |) and classes.txt.") from None
    parts = {split: ds[split].to_pandas() for split in ("train", "test")}
    if task.name == "go_emotions":
        names = getattr(getattr(ds["train"], "features", {}).get("labels"), "feature", None)
        names = getattr(names, "names", None) or list(GO_EMOTIONS_LABELS)
        frames = {s: go_emotions_frame(p, names) for s, p in parts.items()}
        spec = task
    else:
        labels = reuters_labels(parts["train"], parts["test"])
        frames = {s: reuters_frame(p, labels) for s, p in parts.items()}
        from dataclasses import replace

        spec = replace(task, labels=labels)
    counts = Counts(len(frames["train"]) + len(frames["test"]), train=len(frames["train"]), test=len(frames["test"]))
    return TaskData(spec, frames["train"], frames["test"], counts, f"{task.hub_id} ({task.hub_config})")
