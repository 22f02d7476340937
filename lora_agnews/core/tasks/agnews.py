"""AG News: its escaping quirks undone, its original CSV layout, and its three sources (the hub, the
shipped sample, a directory in the original layout).

All end as frames with ``text`` and ``label`` (0..3, AG News' CSV labels 1..4 less one); the hub's ``text``
joins title and description by one space, and the CSVs are joined the same way.
May import: ``paths``, ``tasks.registry``, ``tasks.rows`` and ``tasks.hub``.
"""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from . import hub
from .registry import AGNEWS, HUB, TASKS, DataError
from .rows import read_text

# AG News' class names in the order of its CSV labels 1..4: the meaning of that file layout. Everything
# downstream reads a dataset's labels from its task (Splits.task), never from here.
LABELS: tuple[str, ...] = TASKS[AGNEWS].labels
HUB_ID = TASKS[AGNEWS].hub_id
CSV_COLUMNS = ("label", "title", "description")

# AG News lost the ``&`` of HTML entities (``&#39;s`` became `` #39;s``, ``&amp;`` `` amp;``) and
# uses ``\`` as a line break inside words (``who\officials``). The space that replaced ``&`` is
# eaten with the entity, so ``J amp;J`` -> ``J&J`` and ``Union #39;s`` -> ``Union's``.
_NAMED = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "nbsp": " "}
_BARE_ENTITY = re.compile(r" ?(#\d{1,5}|\bquot|\bamp|\blt|\bgt|\bnbsp);")
_QUIRKS = [
    (re.compile(r"\\\$"), "$"),
    (re.compile(r"\\"), " "),
    (re.compile(r"<[/!a-zA-Z][^<>]{0,2000}>"), " "),
    (re.compile(r"\s+"), " "),
]


def _entity(match: re.Match[str]) -> str:
    """The character a bare entity (``quot;``, ``#39;``) stood for."""
    name = match.group(1)
    if not name.startswith("#"):
        return _NAMED[name]
    code = int(name[1:])
    if code < 32:
        return " "
    if 128 <= code < 160:  # Windows-1252 punctuation (#151; is an em dash)
        return bytes([code]).decode("cp1252", errors="replace").replace("\ufffd", " ")
    return chr(code)


def normalize_text(text: str) -> str:
    """Undo AG News' escaping quirks (``#39;``, ``\\$``, ``&lt;b&gt;``, ``amp;``, ``\\``), the same way for
    every source."""
    text = _BARE_ENTITY.sub(_entity, html.unescape(text))
    for pattern, repl in _QUIRKS:
        text = pattern.sub(repl, text)
    return text.strip()


def read_agnews_csv(path: Path) -> pd.DataFrame:
    """Read one CSV in the original layout (no header; label 1..4, title, description)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist. A data directory needs train.csv and test.csv in the "
                        f"original AG News layout (no header; label,title,description).")
    raw = read_text(path)
    if not raw.strip():
        raise DataError(f"{path} is empty. It needs rows of label,title,description (label 1..4).")
    # csv.reader, not pandas: pandas silently pads a short row with an empty description.
    rows, lines = [], []
    try:
        reader = csv.reader(io.StringIO(raw))
        for row in reader:
            if row:
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV ({exc}). Expected quoted rows label,title,description.") from None
    for row, line in zip(rows, lines):
        if len(row) != 3:
            raise DataError(f"{path} line {line} has {len(row)} column(s); the AG News layout has 3 "
                            f"(label,title,description) and no header row.")
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS), dtype=str)
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | ~labels.isin([1, 2, 3, 4])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path} line {lines[row]}: label {frame['label'].iloc[row]!r} is outside 1..4 "
                        f"(1 World, 2 Sports, 3 Business, 4 Sci/Tech). Fix or drop that row; a header line is not allowed.")
    # title and description joined by one space, as the hub's ``text`` column is: a model reads both sources alike
    text = [normalize_text(f"{t.strip()} {d.strip()}") for t, d in zip(frame["title"], frame["description"])]
    empty = [i for i, t in enumerate(text) if not t]
    if empty:
        raise DataError(f"{path} line {lines[empty[0]]}: title and description are both empty. Drop empty rows.")
    return pd.DataFrame({"text": text, "label": labels.astype(int).to_numpy() - 1})


def load_directory(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test rows of a directory holding ``train.csv`` and ``test.csv`` in the original layout."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist. Pass -p data hub, -p data sample, "
                        f"or a directory holding train.csv and test.csv.")
    missing = [n for n in ("train.csv", "test.csv") if not (directory / n).is_file()]
    if missing:
        raise DataError(f"data directory {directory} has no {' or '.join(missing)}. It needs train.csv and "
                        f"test.csv in the original AG News layout (see data/README.md).")
    return read_agnews_csv(directory / "train.csv"), read_agnews_csv(directory / "test.csv")


def load_hub() -> tuple[pd.DataFrame, pd.DataFrame]:
    """AG News from the Hugging Face hub (``fancyzhx/ag_news``; labels already 0..3)."""
    try:
        ds = hub.load_dataset(HUB_ID)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        raise DataError(
            f"could not load '{HUB_ID}' from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Without the hub, download the original CSVs elsewhere and pass their directory: "
            f"-p data /path/to/ag_news_csv (train.csv, test.csv), or use -p data sample."
        ) from None
    frames = []
    for split in ("train", "test"):
        part = ds[split].to_pandas()
        frames.append(pd.DataFrame({"text": [normalize_text(t) for t in part["text"]],
                                    "label": part["label"].astype(int).to_numpy()}))
    return frames[0], frames[1]


def load_raw(source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AG News' train and test rows from ``source``: ``hub``, ``sample`` (shipped) or a directory."""
    if source == HUB:
        return load_hub()
    if source == "sample":
        return load_directory(paths.SAMPLE_DATA)
    return load_directory(Path(source).expanduser())
