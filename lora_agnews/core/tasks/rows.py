"""A registered task's rows as loaded (:class:`TaskData`), and how a source's texts are read and made fit to
train on: a user's CSV read as UTF-8, texts cleaned and, for a source without a test split, duplicates and
conflicting copies dropped before one fixed split.

Everything ends in one shape: frames with ``text`` and a ``label`` that indexes :attr:`TaskSpec.labels`
(a label set for a multi-label task), so the labels travel with the data.
May import: ``tasks.registry``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .registry import DataError, Task, TaskSpec

SPLIT_SEED = 0  # fixed: the split never follows the training seed
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Counts:
    """What cleaning and splitting did, so the book can say it (all row counts).

    ``dropped_rows`` are rows that are not labelled examples of the task (Rotten Tomatoes' plot
    summaries); ``conflicting_rows`` every copy of a text that appears with two labels
    (``conflicting_texts`` such texts); ``duplicates_removed`` the further copies of texts
    that appear more than once with one label (the first is kept).
    """

    rows_read: int
    dropped_rows: int = 0
    duplicates_removed: int = 0
    conflicting_rows: int = 0
    conflicting_texts: int = 0
    train: int = 0
    test: int = 0

    @classmethod
    def as_given(cls, train: pd.DataFrame, test: pd.DataFrame) -> "Counts":
        """The counts of a source whose own split is kept as it is (nothing dropped or deduplicated)."""
        return cls(len(train) + len(test), train=len(train), test=len(test))

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class TaskData:
    """A task's rows: ``train`` and ``test`` frames (``text``, ``label`` indexing ``task.labels``)."""

    task: TaskSpec
    train: pd.DataFrame = field(repr=False, compare=False)
    test: pd.DataFrame = field(repr=False, compare=False)
    counts: Counts
    origin: str = ""  # what was read: the wheel file, the hub id or the directory

    @property
    def labels(self) -> tuple[str, ...]:
        return self.task.labels

    @property
    def task_identity(self) -> Task:
        """The task as the data, the model and the adapter carry it: name, labels, what was read."""
        return self.task.identity(self.origin or self.task.source)


def clean_text(text: str) -> str:
    """HTML entities decoded (27 Rotten Tomatoes reviews carry ``&amp;``), whitespace collapsed to one space.

    Dedup compares these cleaned texts: two copies that differ only in line breaks are one text.
    """
    return " ".join(html.unescape(text).split())


def read_text(path: Path) -> str:
    """A user's CSV as text: UTF-8 (a spreadsheet export's byte-order mark dropped); another encoding is
    refused with the command that converts it."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}). Re-encode it as UTF-8, "
                        f"for example: iconv -f latin1 -t utf-8 {path.name} > fixed.csv") from None


def dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop every copy of a text seen with two labels, then all but the first copy of each text.

    Run before splitting, so no text can land on both sides; a text labelled both ways is not
    evidence for either label, so none of its copies is kept.
    """
    n_labels = frame.groupby("text")["label"].transform("nunique")
    conflicting = n_labels > 1
    kept = frame[~conflicting]
    unique = kept[~kept["text"].duplicated(keep="first")]
    counts = {"conflicting_rows": int(conflicting.sum()),
              "conflicting_texts": int(frame.loc[conflicting, "text"].nunique()),
              "duplicates_removed": len(kept) - len(unique)}
    return unique.reset_index(drop=True), counts


def fixed_split(frame: pd.DataFrame, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/test split that depends on the rows only, never on a training seed.

    The sources ship no test split; a fixed one keeps every run of every profile scored on the
    same rows. Texts must be unique already (:func:`dedupe`); the overlap is checked anyway.
    """
    # Imported here: scikit-learn's model_selection takes 1.8 s to import (python -X importtime, 2 cores,
    # 2026-12-08), and every run imports this module; only a PyPI copy is split here.
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=test_fraction, stratify=frame["label"], random_state=seed)
    overlap = set(train["text"]) & set(test["text"])
    if overlap:
        raise DataError(f"{len(overlap)} text(s) on both sides of the split, e.g. {next(iter(overlap))[:60]!r}. "
                        f"Remove duplicate texts before splitting (tasks.rows.dedupe).")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def dedupe_and_split(task: TaskSpec, frame: pd.DataFrame, rows_read: int, dropped: int, origin: str) -> TaskData:
    """A source without a test split as a task's rows: deduplicated, then split once (:func:`fixed_split`)."""
    unique, counts = dedupe(frame)
    train, test = fixed_split(unique)
    return TaskData(task, train, test, Counts(rows_read, dropped, train=len(train), test=len(test), **counts),
                    origin)
