"""A configuration's data: which rows it reads, how they are split, and what identifies them.

``task`` and ``data`` choose the source (:func:`load_task`: AG News from the hub, the shipped sample or a
directory in its original layout; another registered task from its PyPI copy, the hub or a directory; a
directory as a task of its own). The rows become train / validation / test (:func:`make_splits`: validation
is carved from train, so model selection never sees test, and the test subset does not follow the training
seed); :func:`data_fingerprint` names what a run read.
May import: ``paths``, ``config`` and ``tasks``.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths
from .config import Config
from .tasks import agnews, label_sets
from .tasks.directory import load_directory_task
from .tasks.hub import load_hub_task
from .tasks.registry import AGNEWS, HUB, PYPI, TASKS, DataError, Task, TaskSpec, get_task
from .tasks.rows import TaskData
from .tasks.wheel import Runner
from .tasks.wheel_corpora import load_wheel_task

TEST_SUBSET_SEED = 0  # fixed: paired comparisons across seeds need the same test rows


@dataclass
class Splits:
    """Train / validation / test frames with columns ``text`` and ``label``, and the task they belong to."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    source: str
    available: dict[str, int] = field(default_factory=dict)  # rows in the source's train/test files
    # the label names (id = position) and their origin
    task: Task = field(default_factory=lambda: TASKS[AGNEWS].identity(""))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.task.labels

    @property
    def label_width(self) -> int:
        """``encode``'s ``num_labels``: the number of labels for a multi-label task (label sets become indicator
        rows), 0 for a single-label one (one class id per row)."""
        return self.task.num_labels if self.task.multi_label else 0

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def facts(self) -> dict[str, int]:
        """How much of the source this run used: the numbers the book's and report's stamp state.

        ``n_train_available`` counts the source's whole training file (validation is carved from it),
        so "trained on 2,000 of 120,000 rows" reads as a reader expects.
        """
        return {"n_train_used": len(self.train), "n_validation": len(self.validation),
                "n_train_available": int(self.available.get("train", len(self.train) + len(self.validation))),
                "n_test_used": len(self.test), "n_test_available": int(self.available.get("test", len(self.test)))}


def load_task_rows(task: str | TaskSpec, data: str = PYPI, cache: Path | None = None,
                   runner: Runner = subprocess.run) -> TaskData:
    """Rows of ``task`` from ``data``: ``pypi`` (the offline wheel), ``hub``, or a directory
    (``label,text`` CSVs, labels checked against the task's unless the directory has classes.txt).

    ``agnews`` keeps its own loader (:func:`load_task`: hub, sample, or a directory in the AG News layout),
    which never comes here.
    """
    spec = get_task(task) if isinstance(task, str) else task
    if spec.name == AGNEWS:
        raise DataError("agnews is read by lora_agnews.core.tasks.agnews (-p data hub, -p data sample, or a directory "
                        "holding the original train.csv and test.csv); it has no copy on PyPI.")
    if data == PYPI:
        return load_wheel_task(spec, cache, runner)
    if data == HUB:
        return load_hub_task(spec)
    return load_directory_task(Path(data), spec)


def task_source(cfg: Config) -> str:
    """Where the configuration's task reads its rows: ``data``, except that for a task other than AG News
    ``sample`` (the default, AG News-shaped) means the offline copy from PyPI, its only one without the hub."""
    if cfg.task == AGNEWS or cfg.data != "sample":
        return cfg.data
    return PYPI


def task_labels(cfg: Config) -> tuple[str, ...]:
    """The configuration's class names in label-id order, without reading rows where the registry knows them.

    The model's head is built from these before the data is loaded (counting parameters needs no data);
    :func:`load_task` gives the same names with the rows, and training checks that both agree. A local
    task's names come from its directory (classes.txt, else the sorted names its files use).
    """
    if cfg.task == AGNEWS:
        return agnews.LABELS
    source = task_source(cfg)
    if cfg.task in TASKS and source in (HUB, PYPI) and TASKS[cfg.task].labels:
        return TASKS[cfg.task].labels
    return load_task(cfg)[2].labels


def task_multi_label(cfg: Config) -> bool:
    """Whether the configuration's task holds label sets (read from the registry, else from its rows)."""
    if cfg.task == AGNEWS:
        return False
    if cfg.task in TASKS:
        return TASKS[cfg.task].multi_label
    return load_task(cfg)[2].multi_label


def load_task(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame, Task]:
    """The configuration's training and test rows (whole files) and the task they belong to.

    AG News: ``data`` is hub, sample or a directory in the original layout. Another registered task
    (``rotten_tomatoes``, ``bbc_news``): hub, pypi or a directory with ``label,text`` CSVs. ``task`` a
    directory: its ``train.csv`` / ``test.csv`` (``label,text``) and optional ``classes.txt``.
    """
    if cfg.task == AGNEWS:
        train, test = agnews.load_raw(cfg.data)
        return train, test, TASKS[AGNEWS].identity(cfg.data)
    if cfg.task in TASKS:
        loaded = load_task_rows(cfg.task, task_source(cfg))
    else:
        loaded = load_directory_task(Path(cfg.task))
    return loaded.train, loaded.test, loaded.task_identity


def load_splits(cfg: Config) -> Splits:
    """The configuration's rows, split (:func:`make_splits`)."""
    train, test, task = load_task(cfg)
    return make_splits(train, test, cfg, task.source or cfg.data, task)


def make_splits(train: pd.DataFrame, test: pd.DataFrame, cfg: Config, source: str = "", task: Task | None = None,
                ) -> Splits:
    """Validation carved from ``train`` (stratified, seeded by ``cfg.seed``), then each split cut to the
    configuration's sizes: an equal share per class, the test rows by a seed of their own."""
    # Imported here: scikit-learn's model_selection takes 1.8 s to import (python -X importtime, 2 cores,
    # 2026-12-08), and a run key's fingerprint and a model's labels read this module without splitting.
    from sklearn.model_selection import train_test_split

    task = task or TASKS[AGNEWS].identity(source or cfg.data)
    if task.multi_label:
        return _multi_label_splits(train, test, cfg, source, task)
    counts = train["label"].value_counts().reindex(range(task.num_labels), fill_value=0)
    if counts.min() < 2:
        shown = {task.labels[i]: int(n) for i, n in counts.items()}
        raise DataError(f"the training data needs at least 2 rows of each of the {task.num_labels} classes of "
                        f"'{task.name}' to carve a stratified validation split; got counts {shown}.")
    seen = {int(x) for x in train["label"].unique()} | {int(x) for x in test["label"].unique()}
    outside = sorted(seen - set(range(task.num_labels)))
    if outside:
        raise DataError(f"label id(s) {outside} are outside 0..{task.num_labels - 1}, the classes of "
                        f"'{task.name}' ({', '.join(task.labels)}).")
    available = {"train": len(train), "test": len(test)}
    fit, val = train_test_split(train, test_size=cfg.val_fraction, stratify=train["label"], random_state=cfg.seed)
    fit = stratified_subsample(fit, cfg.max_train_samples, cfg.seed)
    val = stratified_subsample(val, cfg.max_val_samples, cfg.seed)
    # The test subset does not follow the training seed: every run of a profile is scored on the same
    # rows, so the seed study and the ablation can pair their predictions example by example.
    test = stratified_subsample(test, cfg.max_eval_samples, TEST_SUBSET_SEED)
    return Splits(fit.reset_index(drop=True), val.reset_index(drop=True), test, source or cfg.data, available, task)


def _multi_label_splits(train: pd.DataFrame, test: pd.DataFrame, cfg: Config, source: str, task: Task) -> Splits:
    """:func:`make_splits` for label sets: seeded random splits (stratifying by one class does not apply to sets)."""
    label_sets.check_label_ids([train, test], task.num_labels, task.name)
    available = {"train": len(train), "test": len(test)}
    fit, val = label_sets.split(train, cfg.val_fraction, cfg.seed)
    fit = label_sets.subsample(fit, cfg.max_train_samples, cfg.seed)
    val = label_sets.subsample(val, cfg.max_val_samples, cfg.seed)
    test = label_sets.subsample(test, cfg.max_eval_samples, TEST_SUBSET_SEED)
    return Splits(fit, val, test, source or cfg.data, available, task)


def stratified_subsample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows, an equal share per class, chosen by ``seed`` (all rows when ``n`` is 0 or too large).

    Equal shares keep a small training subset balanced whatever the source's proportions (AG News is
    balanced, a user's CSV may not be). A class with fewer rows than its share gives all it has and the
    others fill the remainder evenly, so the subset always has ``n`` rows.
    """
    if n <= 0 or n >= len(frame):
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    by_class = {label: rng.permutation(np.flatnonzero(frame["label"].to_numpy() == label))
                for label in sorted(frame["label"].unique())}
    quota = dict.fromkeys(by_class, 0)
    left = n
    while left > 0:  # round-robin: each pass gives every class that still has rows one more slot
        open_classes = [c for c in by_class if quota[c] < len(by_class[c])]
        for c in open_classes[:left]:
            quota[c] += 1
        left -= min(left, len(open_classes))
    keep = np.sort(np.concatenate([by_class[c][:quota[c]] for c in by_class]))
    return frame.iloc[rng.permutation(keep)].reset_index(drop=True)


def data_files(cfg: Config) -> tuple[str, list[Path]]:
    """The source a configuration reads and its local files (none for the hub and the checked PyPI copies).

    A missing directory or file is left to the loader, whose error names the fix.
    """
    if cfg.task == AGNEWS:
        if cfg.data == HUB:
            return f"hub:{agnews.HUB_ID}", []
        directory = paths.SAMPLE_DATA if cfg.data == "sample" else Path(cfg.data).expanduser()
        names: tuple[str, ...] = ("train.csv", "test.csv")
    else:
        source = task_source(cfg)
        if cfg.task in TASKS and source in (HUB, PYPI):
            return f"{source}:{cfg.task}", []  # the PyPI copy is checked against its release's SHA-256 when read
        directory = Path(source if cfg.task in TASKS else cfg.task).expanduser()
        names = ("train.csv", "test.csv", "classes.txt")
    return str(directory.resolve()), [directory / n for n in names if (directory / n).is_file()]


def data_fingerprint(cfg: Config) -> str:
    """SHA-256 over the local data files a run reads (names and bytes); a published source's name otherwise.

    Part of a run's identity (:func:`lora_agnews.core.runs.run_key`): a run trained on a CSV that was
    edited since is never reused. Cheap: a file is hashed once per process while its size and
    modification time stay the same.
    """
    source, files = data_files(cfg)
    if not files:
        return source
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        sha256 = paths.file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        digest.update(f"{path.name}\0{sha256}\0".encode())
    return digest.hexdigest()
