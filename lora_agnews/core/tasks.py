"""What a dataset is for: its task name, its label names in order, and where its rows came from.

Label ids are positions in :attr:`Task.labels`. The names travel with the data: the loader puts the
task on :class:`~lora_agnews.core.data.Splits`, the model's ``num_labels`` / ``id2label`` are built from
it, the saved adapter and its card record it, and metrics, tables, plots and ``predict`` read it
back from there. Nothing downstream assumes AG News' four classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

AGNEWS = "agnews"  # the default task (its labels and hub id: lora_agnews.core.registry.TASKS)


class DataError(ValueError):
    """Unusable input data; the message names the file, the problem and the fix."""


class TaskError(ValueError):
    """Labels that do not fit: the message names both sides (what was expected, what was found)."""


@dataclass(frozen=True)
class Task:
    """A classification task: ``name``, ``labels`` (id = position), ``source`` (where the rows came from) and
    ``multi_label`` (each example holds a set of labels, see :mod:`lora_agnews.core.multilabel`)."""

    name: str
    labels: tuple[str, ...]
    source: str = ""
    multi_label: bool = False

    def __post_init__(self) -> None:
        labels = tuple(str(n) for n in self.labels)
        object.__setattr__(self, "labels", labels)
        if len(labels) < 2:
            raise TaskError(f"task {self.name!r} has {len(labels)} label(s) {list(labels)}; a classifier needs at "
                            f"least 2 distinct label names.")
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise TaskError(f"task {self.name!r} names label(s) {dupes} more than once; label names must be distinct.")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "labels": list(self.labels), "source": self.source}
        if self.multi_label:  # only then: single-label records stay as they were
            out["multi_label"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Task":
        return cls(str(data["name"]), tuple(data["labels"]), str(data.get("source", "")),
                   bool(data.get("multi_label", False)))


def label_config(labels: Sequence[str], multi_label: bool = False) -> dict[str, Any]:
    """The keyword arguments that give a transformers config this task's head width and label names
    (and, for label sets, ``problem_type``: transformers then trains with BCE on sigmoid outputs)."""
    labels = tuple(labels)
    out: dict[str, Any] = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                           "label2id": {name: i for i, name in enumerate(labels)}}
    if multi_label:
        out["problem_type"] = "multi_label_classification"
    return out


def model_labels(model: Any) -> tuple[str, ...]:
    """The label names a (PEFT-wrapped or plain) transformers classifier carries in its config, in id order."""
    config = model.config
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return tuple(id2label.get(i, f"LABEL_{i}") for i in range(int(config.num_labels)))


def check_same_labels(expected: Sequence[str], found: Sequence[str], expected_what: str, found_what: str) -> None:
    """Refuse a head, an adapter or a file whose labels are not the task's, naming both sides."""
    if tuple(expected) != tuple(found):
        raise TaskError(f"{found_what} has {len(found)} label(s) {list(found)}, but {expected_what} has "
                        f"{len(expected)} {list(expected)}: they must be the same names in the same order. "
                        f"Use an adapter or model trained on this task, or pick the task it was trained on.")
