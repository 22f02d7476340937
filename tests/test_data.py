"""Data: the three sources, text normalisation, stratified seeded splits, tokens and padding, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lora_agnews.core import config, paths
from lora_agnews.core.dataset import load_splits, make_splits, stratified_subsample
from lora_agnews.core.tasks.agnews import (HUB_ID, LABELS, load_directory, load_hub, load_raw, normalize_text,
                                           read_agnews_csv)
from lora_agnews.core.tasks.registry import DataError
from lora_agnews.core.tokens import PadCollator, TokenizedDataset, encode, tokenize


# --------------------------------------------------------------------------- helpers
def write_csv(path: Path, rows: list[tuple]) -> Path:
    """Rows in the original AG News layout: no header, every field quoted."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(rows)
    return path


def synthetic_rows(n_per_class: int, offset: int = 0) -> list[tuple]:
    return [(str(label), f"Title {label} {i + offset}", f"Body of story {i + offset} in class {label}.")
            for i in range(n_per_class) for label in (1, 2, 3, 4)]


def frame(n_per_class: int, seed: int = 0) -> pd.DataFrame:
    labels = np.repeat(np.arange(4), n_per_class)
    np.random.default_rng(seed).shuffle(labels)
    return pd.DataFrame({"text": [f"text {i}" for i in range(len(labels))], "label": labels})


@pytest.fixture(scope="module")
def tokenizer():
    from lora_agnews.core.encoders import build_local_tokenizer

    return build_local_tokenizer([f"alpha beta gamma delta {w}" for w in ("one", "two", "three", "four")])


# --------------------------------------------------------------------------- the shipped sample
def test_sample_loads_balanced() -> None:
    cfg = config.load("smoke")
    train, test = load_raw("sample")
    assert (len(train), len(test)) == (640, 400)
    for part, n in ((train, 160), (test, 100)):
        assert list(part.columns) == ["text", "label"]
        assert part["label"].value_counts().sort_index().to_dict() == {0: n, 1: n, 2: n, 3: n}
        assert part["text"].str.len().min() > 10
    assert LABELS == ("World", "Sports", "Business", "Sci/Tech")
    splits = load_splits(cfg)
    assert splits.source == "sample"
    assert sum(splits.sizes().values()) == 1040
    assert splits.sizes()["test"] == 400


def test_sample_files_keep_their_guarantees() -> None:
    """The layout and guarantees data/README.md states for data/make_sample.py's output."""
    rows = {}
    for name in ("train", "test"):
        raw = (paths.SAMPLE_DATA / f"{name}.csv").read_bytes()
        assert raw.isascii() and raw.endswith(b"\n") and b"\r" not in raw
        lines = raw.decode("ascii").splitlines()
        rows[name] = list(csv.reader(lines))
        for line, (label, title, desc) in zip(lines, rows[name]):
            assert line == ",".join(f'"{field}"' for field in (label, title, desc))  # all fields quoted
            assert label in {"1", "2", "3", "4"}
            assert 4 <= len(title.split()) <= 12 and 15 <= len(desc.split()) <= 45
        labels = [r[0] for r in rows[name]]
        assert labels != sorted(labels)  # shuffled, not grouped by class
    pairs = [(r[1], r[2]) for part in rows.values() for r in part]
    assert len(set(pairs)) == len(pairs)
    assert not {r[1] for r in rows["train"]} & {r[1] for r in rows["test"]}


# --------------------------------------------------------------------------- text
@pytest.mark.parametrize(
    ("raw", "clean"),
    [("Union #39;s bid", "Union's bid"), ("costs \\$5 now", "costs $5 now"), ("US#36;600m", "US$600m"),
     ("&lt;b&gt;Bold&lt;/b&gt; news", "Bold news"), ("He said  quot;no quot; twice", 'He said "no" twice'),
     ("IBM, J amp;J news", "IBM, J&J news"), ("Publishing  amp; Broadcast", "Publishing & Broadcast"),
     ("true  #151; at least", "true \u2014 at least"), ("the tiny\\southeast Asian", "the tiny southeast Asian"),
     ("Corp.  lt;7269.T gt; said", "Corp. <7269.T> said"), ("Atlanta nbsp;Journal", "Atlanta Journal"),
     ('ad &lt;a href="http://x.example/?a=1&amp;b=2"&gt;here&lt;/a&gt; end', "ad here end"),
     ("  spaced \t out\n text ", "spaced out text"), ("Tom &amp; Jerry", "Tom & Jerry")],
)
def test_normalize_text(raw: str, clean: str) -> None:
    assert normalize_text(raw) == clean


def test_normalize_text_is_idempotent_on_clean_text() -> None:
    text = "Oil hits $62 as Iran's exports fall (Reuters) - 3 < 4 and 5 > 2."
    assert normalize_text(text) == text
    assert normalize_text(normalize_text("Union #39;s \\$5")) == "Union's $5"


# --------------------------------------------------------------------------- local CSV directory
def test_csv_directory_with_quirks(tmp_path: Path) -> None:
    rows = [("1", "Union #39;s plan", "Leaders meet &lt;b&gt;today&lt;/b&gt;."),
            ("2", "Sox win", "Boston beat New York 5-3 \\$ fans cheered."),
            ("3", "Stocks rise.", "Shares up \\$2 on J amp;J news"),
            ("4", "New chip", "Faster  quot;cores quot; ship")] * 3
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "test.csv", rows[:4])
    train, test = load_directory(tmp_path)
    assert len(train) == 12 and len(test) == 4
    assert train["label"].tolist()[:4] == [0, 1, 2, 3]  # 1..4 -> 0..3
    assert test["text"].tolist() == [
        "Union's plan Leaders meet today .",  # title and description joined by a space, as on the hub
        "Sox win Boston beat New York 5-3 $ fans cheered.",
        "Stocks rise. Shares up $2 on J&J news",
        'New chip Faster "cores" ship',
    ]
    for text in train["text"]:
        assert "#39;" not in text and "&lt;" not in text and "\\" not in text and "quot;" not in text


def test_csv_directory_through_config(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", synthetic_rows(10))
    write_csv(tmp_path / "test.csv", synthetic_rows(3, offset=100))
    cfg = config.load("smoke", {"data": str(tmp_path), "val_fraction": 0.2})
    splits = load_splits(cfg)
    assert splits.sizes() == {"train": 32, "validation": 8, "test": 12}
    assert splits.source == str(tmp_path)


@pytest.mark.parametrize("label", [1, 2, 3, 4])
def test_label_mapping(tmp_path: Path, label: int) -> None:
    path = write_csv(tmp_path / "one.csv", [(str(label), "A title", "A description")])
    assert read_agnews_csv(path)["label"].tolist() == [label - 1]


# --------------------------------------------------------------------------- bad input
def test_directory_without_csvs(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", synthetic_rows(2))
    with pytest.raises(DataError) as info:
        load_directory(tmp_path)
    assert "test.csv" in str(info.value) and str(tmp_path) in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        load_directory(tmp_path / "nowhere")
    with pytest.raises(DataError, match="train.csv and test.csv"):
        load_splits(config.load("smoke", {"data": str(tmp_path / "nowhere")}))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b'"5","Title","Body"\n', "'5' is outside 1..4"),
     (b'"0","Title","Body"\n', "'0' is outside 1..4"),
     (b'label,title,description\n"1","Title","Body"\n', "header"),
     (b'"1","a","b"\n"x","c","d"\n', "line 2"),
     (b"", "is empty"),
     (b"\n  \n", "is empty"),
     (b'"1","Title"\n"2","Other"\n', "has 2 column(s)"),
     (b'"1","Title","Body","extra"\n', "has 4 column(s)"),
     (b'"1","Title","Body"\n"2","Only title"\n', "line 2 has 2 column(s)"),  # a short row is not padded
     (b'"1","Caf\xe9","Body"\n', "not UTF-8"),
     (b'"1","Fine","Body"\n"2","",""\n', "line 2: title and description are both empty")],
)
def test_bad_csv(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_agnews_csv(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_non_utf8_message_suggests_reencoding(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b'"1","Caf\xe9","Body"\n')
    with pytest.raises(DataError, match="iconv"):
        read_agnews_csv(path)


def test_too_few_rows_per_class_for_validation() -> None:
    train = pd.DataFrame({"text": ["a", "b", "c", "d", "e"], "label": [0, 0, 1, 2, 3]})
    with pytest.raises(DataError, match="at least 2 rows of each"):
        make_splits(train, train, config.load("smoke"))


# --------------------------------------------------------------------------- hub (mocked at the network)
def fake_hub_dataset():
    import datasets

    train = {"text": ["Union #39;s plan fails", "Sox win \\$5 bet", "Stocks J amp;J up", "New &lt;b&gt;chip&lt;/b&gt;"] * 5,
             "label": [0, 1, 2, 3] * 5}
    test = {"text": ["World story", "Sports story", "Business story", "Tech story"], "label": [0, 1, 2, 3]}
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(train), "test": datasets.Dataset.from_dict(test)})


def test_hub_source(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def load_dataset(name, *args, **kwargs):
        calls.append(name)
        return fake_hub_dataset()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    train, test = load_hub()
    assert calls == [HUB_ID]
    assert len(train) == 20 and len(test) == 4
    assert train["label"].tolist()[:4] == [0, 1, 2, 3]  # hub labels are already 0..3: unchanged
    assert train["text"].tolist()[:4] == ["Union's plan fails", "Sox win $5 bet", "Stocks J&J up", "New chip"]
    splits = load_splits(config.load("smoke", {"data": "hub", "val_fraction": 0.2}))
    assert splits.sizes() == {"train": 16, "validation": 4, "test": 4} and splits.source == "hub"


def test_hub_unreachable_says_how_to_use_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'fancyzhx/ag_news' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(DataError) as info:
        load_splits(config.load("smoke", {"data": "hub"}))
    msg = str(info.value)
    assert "ConnectionError" in msg and "-p data /path/to/" in msg and "train.csv" in msg and "-p data sample" in msg


# --------------------------------------------------------------------------- splits
def class_counts(part: pd.DataFrame) -> dict[int, int]:
    return part["label"].value_counts().sort_index().to_dict()


@pytest.mark.parametrize("val_fraction", [0.1, 0.25])
def test_stratified_split_keeps_proportions(val_fraction: float) -> None:
    train = frame(n_per_class=37)
    test = frame(n_per_class=5, seed=1)
    cfg = config.load("smoke", {"val_fraction": val_fraction})
    splits = make_splits(train, test, cfg)
    val_counts = class_counts(splits.validation)
    for label in range(4):
        assert abs(val_counts[label] - 37 * val_fraction) <= 1
    assert len(splits.train) + len(splits.validation) == len(train)
    pd.testing.assert_frame_equal(splits.test, test.reset_index(drop=True))  # test untouched


def test_stratified_split_unbalanced_classes() -> None:
    labels = np.array([0] * 100 + [1] * 40 + [2] * 20 + [3] * 10)
    train = pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels})
    splits = make_splits(train, train.head(8), config.load("smoke", {"val_fraction": 0.2}))
    counts = class_counts(splits.validation)
    for label, n in zip(range(4), (100, 40, 20, 10)):
        assert abs(counts[label] - 0.2 * n) <= 1


def test_split_is_seeded_and_disjoint() -> None:
    train, test = frame(n_per_class=50), frame(n_per_class=5, seed=1)
    cfg = config.load("smoke", {"val_fraction": 0.2})
    a = make_splits(train, test, cfg)
    b = make_splits(train, test, cfg)
    c = make_splits(train, test, cfg.replace(seed=cfg.seed + 1))
    assert a.validation["text"].tolist() == b.validation["text"].tolist()
    assert a.train["text"].tolist() == b.train["text"].tolist()
    assert set(a.validation["text"]) != set(c.validation["text"])
    assert not set(a.train["text"]) & set(a.validation["text"])
    assert set(a.train["text"]) | set(a.validation["text"]) == set(train["text"])


def test_max_samples_are_stratified() -> None:
    cfg = config.load("smoke", {"max_train_samples": 40, "max_eval_samples": 20})
    splits = load_splits(cfg)
    assert class_counts(splits.train) == {0: 10, 1: 10, 2: 10, 3: 10}
    assert class_counts(splits.test) == {0: 5, 1: 5, 2: 5, 3: 5}
    assert len(splits.validation) == 64  # validation is carved before the cap, not capped
    full = load_splits(config.load("smoke"))
    assert set(splits.train["text"]) <= set(full.train["text"])  # a subset of the same train split
    assert set(splits.test["text"]) <= set(full.test["text"])


def test_test_subset_is_the_same_for_every_seed() -> None:
    """Paired statistics across seeds score the same test rows, in the same order; training rows follow the seed."""
    cfg = config.load("smoke", {"max_train_samples": 40, "max_eval_samples": 20})
    a, b = load_splits(cfg), load_splits(cfg.replace(seed=cfg.seed + 1))
    assert a.test["text"].tolist() == b.test["text"].tolist()
    assert a.train["text"].tolist() != b.train["text"].tolist()


def test_max_samples_zero_or_large_keeps_all() -> None:
    part = frame(n_per_class=6)
    assert len(stratified_subsample(part, 0, 1)) == 24
    assert len(stratified_subsample(part, 1000, 1)) == 24


# --------------------------------------------------------------------------- tokens and padding
def test_pad_collator_pads_to_longest_in_batch() -> None:
    collate = PadCollator(pad_token_id=1)
    batch = collate([{"input_ids": [0, 5, 6, 2], "labels": 3}, {"input_ids": [0, 7, 2], "labels": 1}])
    assert batch["input_ids"].tolist() == [[0, 5, 6, 2], [0, 7, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [3, 1]
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long


def test_pad_collator_multiple_and_extra_columns() -> None:
    collate = PadCollator(pad_token_id=0, multiple=8)
    items = [{"input_ids": list(range(1, 10)), "labels": 0, "teacher_logits": np.ones(4, dtype=np.float32)},
             {"input_ids": [1, 2], "labels": 2, "teacher_logits": np.zeros(4, dtype=np.float32)}]
    batch = collate(items)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(dim=1).tolist() == [9, 2]
    assert batch["teacher_logits"].shape == (2, 4)


def test_encode_is_unpadded_and_truncated(tokenizer) -> None:
    part = pd.DataFrame({"text": ["alpha", "alpha beta gamma delta one two three four"], "label": [0, 3]})
    dataset = encode(part, tokenizer, max_length=6)
    assert dataset.lengths == [3, 6]  # <s> alpha </s>; truncated to max_length, not padded to it
    assert dataset.labels == [0, 3]
    assert dataset[1]["input_ids"][0] == tokenizer.bos_token_id
    batch = PadCollator(tokenizer.pad_token_id)([dataset[0], dataset[1]])
    assert batch["input_ids"].shape == (2, 6)
    assert batch["input_ids"][0, 3:].tolist() == [tokenizer.pad_token_id] * 3


def test_tokenize_cache_hit(tokenizer) -> None:
    texts = ["alpha beta", "gamma delta one"]
    first = tokenize(texts, tokenizer, max_length=16)
    files = list(paths.cache_dir().glob("tokens-*.pt"))
    assert len(files) == 1

    class NoCalls:
        """Same vocabulary, but tokenising again fails: only a cache hit can answer."""

        def get_vocab(self):
            return tokenizer.get_vocab()

        def __call__(self, *args, **kwargs):
            raise AssertionError("tokenizer called despite a cached result")

    assert tokenize(texts, NoCalls(), max_length=16) == first
    tokenize(texts, tokenizer, max_length=8)  # another max_length is another cache entry
    assert len(list(paths.cache_dir().glob("tokens-*.pt"))) == 2


def test_tokenize_corrupt_cache_is_recomputed(tokenizer) -> None:
    texts = ["alpha beta"]
    first = tokenize(texts, tokenizer, max_length=16)
    (cache_file,) = paths.cache_dir().glob("tokens-*.pt")
    cache_file.write_bytes(b"not a torch file")
    assert tokenize(texts, tokenizer, max_length=16) == first


def test_dataset_length_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        TokenizedDataset([[1, 2]], [0, 1])


# --------------------------------------------------------------------------- real AG News rows
@pytest.mark.realdata
def test_real_agnews_subset(shared_data: Path) -> None:
    train = read_agnews_csv(shared_data / "train.csv")
    test = read_agnews_csv(shared_data / "test.csv")
    assert (len(train), len(test)) == (9_999, 3_800)
    assert class_counts(train) == {0: 2_514, 1: 2_504, 2: 2_519, 3: 2_462}
    assert class_counts(test) == {0: 950, 1: 950, 2: 950, 3: 950}
    raw = (shared_data / "train.csv").read_text(encoding="utf-8")
    assert "#39;" in raw and "quot;" in raw and "&lt;" in raw  # the quirks are there to be removed
    for part in (train, test):
        joined = "\n".join(part["text"])
        for artefact in ("#39;", "quot;", "&lt;", "&gt;", "amp;", "\\", "nbsp;"):
            assert artefact not in joined, artefact
        assert not any(f"#{n};" in joined for n in (36, 146, 151))
    assert any("'s " in t for t in train["text"])
