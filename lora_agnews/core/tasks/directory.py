"""A task from a local directory: ``train.csv`` and ``test.csv`` (header ``label,text``) and an optional
``classes.txt``; one label per row, or label sets (``a|b``) for a multi-label task. The user's split is
kept as given (no dedup, no resplit).
May import: ``tasks.registry``, ``tasks.label_sets`` and ``tasks.rows``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import pandas as pd

from .label_sets import SEPARATOR, is_multi_label_cells, parse_cell
from .registry import TASKS, DataError, TaskSpec
from .rows import Counts, TaskData, clean_text, read_text

Rows = dict[str, list[tuple[str, str, int]]]  # split name -> (label cell, cleaned text, line number) per row


def read_classes(path: Path) -> tuple[str, ...]:
    """``classes.txt``: one label name a line, in index order (blank lines ignored)."""
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if not names or duplicated:
        raise DataError(f"{path} must list each label name once, one a line; "
                        f"{'it is empty' if not names else 'repeated: ' + ', '.join(duplicated)}.")
    return tuple(names)


def read_labelled_csv(path: Path) -> list[tuple[str, str, int]]:
    """Rows of a ``label,text`` CSV with a header: (label string, cleaned text, line number).

    Other columns are ignored; csv.reader, not pandas, so errors can name the line.
    """
    if not path.is_file():
        raise DataError(f"{path} does not exist. A task directory needs train.csv and test.csv with a "
                        f"header row label,text (and optionally classes.txt).")
    reader = csv.reader(io.StringIO(read_text(path)))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty. It needs a header row label,text and one row per example.")
        columns = [c.strip().lower() for c in header]
        if "label" not in columns or "text" not in columns:
            raise DataError(f"{path} has header {','.join(header)!r}; it needs columns named label and text "
                            f"(a header row label,text).")
        at_label, at_text = columns.index("label"), columns.index("text")
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path} line {reader.line_num} has {len(row)} column(s), the header {len(header)}. "
                                f"Quote texts that contain commas.")
            text = clean_text(row[at_text])
            if not text:
                raise DataError(f"{path} line {reader.line_num}: the text is empty. Drop empty rows.")
            rows.append((row[at_label].strip(), text, reader.line_num))
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV ({exc}). "
                        f"Expected a header label,text and quoted rows.") from None
    return rows


def load_directory_task(directory: Path, task: TaskSpec | None = None) -> TaskData:
    """A task from ``train.csv`` and ``test.csv`` (header ``label,text``, label names as strings).

    The label order, and the only labels allowed, come from ``classes.txt`` (one name a line)
    if the directory has one, else from ``task`` (a user's copy of a named task keeps its
    label indices), else they are the sorted names found in both files. The user's split is
    kept as given (no dedup, no resplit).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"task directory {directory} does not exist. Pass a directory holding train.csv and "
                        f"test.csv (label,text), or a task name: {', '.join(sorted(TASKS))}.")
    parts = {name: read_labelled_csv(directory / f"{name}.csv") for name in ("train", "test")}
    classes = directory / "classes.txt"
    if classes.is_file():
        labels, authority = read_classes(classes), f"in {classes}"
    elif task is not None and task.labels:
        labels, authority = task.labels, f"one of task {task.name}'s labels"
    else:
        labels, authority = None, ""
    if _directory_kind(directory, parts, labels, task):
        labels, frames = _label_set_frames(directory, parts, labels)
        multi_label = True
    else:
        labels, frames = _class_frames(directory, parts, labels, authority)
        multi_label = False
    note = f"local directory {directory}" + (f" (a copy of {task.name})" if task else "")
    described = TaskSpec(task.name if task else directory.name or str(directory), labels, note,
                         directory=directory, multi_label=multi_label)
    return TaskData(described, frames["train"], frames["test"], Counts.as_given(frames["train"], frames["test"]),
                    str(directory))


def _directory_kind(directory: Path, parts: Rows, labels: Sequence[str] | None, task: TaskSpec | None) -> bool:
    """Whether a directory's rows are label sets: a named task says so; otherwise its cells do (a ``|`` that is
    not a class name). A ``|`` in a copy of a named single-label task is refused, naming the row."""
    if task is None:
        return is_multi_label_cells([c for rows in parts.values() for c, _, _ in rows], labels or ())
    if not task.multi_label:
        for name, rows in parts.items():
            for cell, _, line in rows:
                if SEPARATOR in cell and cell not in (labels or ()):
                    raise DataError(f"{directory / f'{name}.csv'} line {line}: label {cell!r} holds several labels "
                                    f"separated by '{SEPARATOR}', but task {task.name} is single-label (one of "
                                    f"{', '.join(labels or task.labels)}). Give one class per row, or pass the "
                                    f"directory itself as a multi-label task (-p task {directory}).")
    return task.multi_label


def _class_frames(directory: Path, parts: Rows, labels: Sequence[str] | None, authority: str,
                  ) -> tuple[tuple[str, ...], dict[str, pd.DataFrame]]:
    """Label names (``labels``, else the sorted names the cells use) and frames of one class id per row."""
    labels = tuple(labels) if labels is not None else tuple(sorted({label for rows in parts.values()
                                                                    for label, _, _ in rows}))
    for name, rows in parts.items():
        for label, _, line in rows:
            if label not in labels:
                raise DataError(f"{directory / f'{name}.csv'} line {line}: label {label!r} is not {authority} "
                                f"({', '.join(labels)}). Fix the row, or list the label in classes.txt.")
    index = {name: i for i, name in enumerate(labels)}
    frames = {name: pd.DataFrame({"text": [t for _, t, _ in rows], "label": [index[lab] for lab, _, _ in rows]},
                                 columns=["text", "label"]).astype({"label": int})
              for name, rows in parts.items()}
    return labels, frames


def _label_set_frames(directory: Path, parts: Rows, labels: Sequence[str] | None,
                      ) -> tuple[tuple[str, ...], dict[str, pd.DataFrame]]:
    """Label names (``labels``, else the sorted names the cells use) and frames of label sets."""
    if labels is None:
        labels = tuple(sorted({n.strip() for rows in parts.values() for cell, _, _ in rows
                               for n in cell.split(SEPARATOR) if n.strip()}))
    index = {name: i for i, name in enumerate(labels)}
    frames = {}
    for split, rows in parts.items():
        sets = [parse_cell(cell, index, f"{directory / f'{split}.csv'} line {line}") for cell, _, line in rows]
        frames[split] = pd.DataFrame({"text": [t for _, t, _ in rows], "label": sets}, columns=["text", "label"])
    return tuple(labels), frames
