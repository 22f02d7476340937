"""Data-exploration helpers (notebook 01): counts, lengths, truncation, duplicates. Fast, synthetic data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lora_agnews.studies import explore
from lora_agnews.core.dataset import Splits
from lora_agnews.core.encoders import build_local_tokenizer
from lora_agnews.core.tasks.agnews import LABELS


def _frame(rows: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture
def splits() -> Splits:
    train = _frame([("stocks rally on wall street", 2), ("team wins the cup final", 1),
                    ("new chip speeds up phones", 3), ("leaders meet for peace talks", 0),
                    ("Stocks  rally on Wall Street", 2),  # duplicate of row 0 after case/space folding
                    ("rain delays the match", 1)])
    validation = _frame([("oil prices fall again", 2), ("team wins the cup final", 1)])  # overlaps train
    test = _frame([("new chip speeds up phones", 0),  # in train with another label: conflicting
                   ("a brand new test headline that is rather long indeed", 3), ("election results announced", 0)])
    return Splits(train, validation, test, source="synthetic")


@pytest.fixture
def tokenizer(splits: Splits):
    return build_local_tokenizer(pd.concat([splits.train, splits.validation, splits.test])["text"].tolist())


def test_class_balance_counts_and_shares(splits: Splits) -> None:
    table = explore.class_balance(splits)
    assert list(table.index) == list(LABELS)
    assert table.loc["Business", "train"] == 2 and table.loc["Sports", "train"] == 2
    assert table["train"].sum() == len(splits.train)
    for name in ("train", "validation", "test"):
        assert table[f"{name}_share"].sum() == pytest.approx(1.0)


def test_lengths_count_words_and_untruncated_tokens(splits: Splits, tokenizer) -> None:
    table = explore.lengths(splits, tokenizer)
    assert len(table) == 11 and set(table["split"]) == {"train", "validation", "test"}
    long_row = table[table["words"] == 10].iloc[0]
    assert long_row["tokens"] == 12  # 10 words + <s> and </s>: nothing truncated when counting
    summary = explore.length_summary(table)
    assert list(summary.index) == ["train", "validation", "test"]
    assert summary.loc["test", "max_tokens"] == 12


def test_truncation_counts_examples_and_lost_tokens() -> None:
    table = pd.DataFrame({"split": ["train"] * 4, "class": ["World"] * 4, "words": [1, 2, 3, 4],
                          "tokens": [3, 5, 8, 10]})
    cut = explore.truncation(table, max_length=5)
    row = cut.loc["train"]
    assert row["truncated"] == 2 and row["truncated_share"] == pytest.approx(0.5)
    assert row["tokens_lost"] == 3 + 5 and row["tokens_lost_share"] == pytest.approx(8 / 26)
    with pytest.raises(ValueError, match="max_length"):
        explore.truncation(table, 0)


def test_duplicates_overlap_and_conflicting_labels(splits: Splits) -> None:
    dupes = explore.duplicates(splits)
    assert dupes["within_split"] == {"train": 1, "validation": 0, "test": 0}
    assert dupes["train_test_overlap"] == 1
    assert dupes["overlap_examples"] == ["new chip speeds up phones"]
    assert dupes["train_validation_overlap"] == 1
    assert dupes["conflicting_labels"] == 1
    table = explore.duplicate_table(dupes)
    assert table.loc["test texts also in train or validation", "examples"] == 1


def test_examples_per_class_are_shortened(splits: Splits) -> None:
    shown = explore.examples_per_class(splits.train, splits.labels, n=1, seed=0, width=12)
    assert list(shown["class"]) == list(LABELS)
    assert all(len(t) <= 12 for t in shown["text"])
    assert any(t.endswith("…") for t in shown["text"])


def test_summary_is_plain_json(splits: Splits, tokenizer) -> None:
    balance = explore.class_balance(splits)
    table = explore.lengths(splits, tokenizer)
    cut = explore.truncation(table, 6)
    summary = explore.summary(splits, balance, table, cut, explore.duplicates(splits), 6)
    text = json.dumps(summary)
    assert summary["sizes"] == {"train": 6, "validation": 2, "test": 3}
    assert summary["class_counts"]["test"]["World"] == 2
    assert summary["truncation"]["test"]["truncated"] == 2 and "max_length" in text
