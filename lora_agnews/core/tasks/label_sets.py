"""The multi-label task kind's rows: label sets, how they are written, split and checked.

A multi-label task's example carries a *set* of labels (possibly empty). The model keeps the same head
(K outputs); transformers' ``problem_type="multi_label_classification"`` trains it with binary
cross-entropy on sigmoid outputs, so each output is an independent yes/no probability. A set is written
in a ``label,text`` CSV cell as ``a|b|c``, becomes an indicator row for the loss, and is split at random
(stratifying by one class does not apply to sets). The checks here refuse mixing the two kinds.
May import: ``tasks.registry``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .registry import PROBLEM_TYPE, DataError, TaskError

SEPARATOR = "|"  # between the labels of one example in a ``label,text`` CSV cell


def parse_cell(cell: str, index: Mapping[str, int], where: str) -> tuple[int, ...]:
    """The sorted label ids of one ``a|b|c`` cell (empty cell: no label); an unknown name is refused."""
    names = [n.strip() for n in cell.split(SEPARATOR)] if cell.strip() else []
    unknown = [n for n in names if n not in index]
    if unknown:
        raise DataError(f"{where}: label {unknown[0]!r} is not in classes.txt ({', '.join(index)}). "
                        f"Fix the row, or list the label in classes.txt.")
    return tuple(sorted({index[n] for n in names}))


def is_multi_label_cells(cells: Sequence[str], classes: Sequence[str]) -> bool:
    """Whether a directory's label cells declare a multi-label task: some cell holds ``|`` that is not
    itself a class name of ``classes.txt``. Without one, the task is single-label as before (and an empty
    cell stays an error, so a forgotten label is never read as "no label")."""
    names = set(classes)
    return any(SEPARATOR in c and c not in names for c in cells)


def multi_hot(label_sets: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """``(rows, num_labels)`` float32 indicator matrix of label sets (the BCE target)."""
    out = np.zeros((len(label_sets), num_labels), dtype=np.float32)
    for row, ids in enumerate(label_sets):
        out[row, list(ids)] = 1.0
    return out


def as_indicator(labels: Any, num_labels: int) -> np.ndarray:
    """An indicator matrix from either an indicator matrix (a 2-D array) or a sequence of label-id sets."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        return labels.astype(np.float32)
    return multi_hot(list(labels), num_labels)


def split(frame: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """A seeded random split of a multi-label frame (stratification by one class does not apply to sets)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    n_val = max(1, int(round(len(frame) * fraction)))
    return frame.iloc[np.sort(order[n_val:])], frame.iloc[np.sort(order[:n_val])]


def subsample(frame: Any, n: int, seed: int) -> Any:
    """``n`` rows chosen by ``seed`` (all when ``n`` is 0 or too large), in a seeded order."""
    if n <= 0 or n >= len(frame):
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    return frame.iloc[rng.permutation(len(frame))[:n]].reset_index(drop=True)


def check_label_ids(frames: Sequence[Any], num_labels: int, task: str) -> None:
    """Refuse label ids outside 0..K-1 and a training split where no label ever occurs."""
    for frame in frames:
        for ids in frame["label"]:
            bad = [i for i in ids if not 0 <= int(i) < num_labels]
            if bad:
                raise DataError(f"label id(s) {bad} are outside 0..{num_labels - 1}, the labels of '{task}'.")
    if not any(len(ids) for ids in frames[0]["label"]):
        raise DataError(f"the training data of '{task}' has no labelled example (every label set is empty); "
                        f"a multi-label classifier needs positives of its labels.")


def check_same_kind(expected: bool, found: bool, expected_what: str, found_what: str) -> None:
    """Refuse a multi-label adapter used for a single-label task or the reverse, naming both sides."""
    if bool(expected) != bool(found):
        kinds = {True: "multi-label (label sets, sigmoid)", False: "single-label (one class, softmax)"}
        raise TaskError(f"{found_what} is {kinds[bool(found)]}, but {expected_what} is {kinds[bool(expected)]}; "
                        f"use an adapter trained on a task of the same kind.")


def is_multi_label_model(model: Any) -> bool:
    """Whether a (PEFT-wrapped or plain) transformers classifier was built for label sets."""
    return getattr(getattr(model, "config", None), "problem_type", None) == PROBLEM_TYPE


def check_training_config(cfg: Any) -> None:
    """Refuse settings whose loss is single-label only, before anything is written (the Trainer's label
    smoothing and the distillation loss are cross-entropies over one class)."""
    if cfg.label_smoothing:
        raise TaskError(f"parameter 'label_smoothing' is {cfg.label_smoothing:g}, but task {cfg.task!r} is multi-label "
                        f"(BCE per label; the Trainer's smoothing is a softmax cross-entropy). Use -p label_smoothing 0.")
    if cfg.distill_logits:
        raise TaskError(f"parameter 'distill_logits' is set, but task {cfg.task!r} is multi-label (the distillation "
                        f"loss is a softmax KL divergence). Drop -p distill_logits.")
