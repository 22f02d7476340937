"""Data exploration for notebook 01: class balance, lengths, truncation, duplicates and overlap.

These are the checks that decide whether the numbers later in the book mean anything: a
skewed class balance changes what "accuracy" rewards, a ``max_length`` that cuts most texts
hides information from the model, and test texts that also occur in train inflate accuracy.
Every function takes data and returns a table or a dict; nothing here plots or writes files.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from ..core.dataset import Splits

SPLITS = ("train", "validation", "test")
_SPACES = re.compile(r"\s+")


def _frames(splits: Splits) -> dict[str, pd.DataFrame]:
    return {"train": splits.train, "validation": splits.validation, "test": splits.test}


def class_balance(splits: Splits) -> pd.DataFrame:
    """Examples per class and split (counts and shares); rows are the task's classes, in label order."""
    names = splits.labels
    counts = {name: frame["label"].value_counts().reindex(range(len(names)), fill_value=0).to_numpy()
              for name, frame in _frames(splits).items()}
    table = pd.DataFrame(counts, index=pd.Index(names, name="class"))
    for name in SPLITS:
        total = table[name].sum()
        table[f"{name}_share"] = table[name] / total if total else 0.0
    return table


@contextlib.contextmanager
def _quiet_tokenizer() -> Iterator[None]:
    """Untruncated tokenisation warns once per long text; the lengths are what we want here."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def token_lengths(texts: Sequence[str], tokenizer: Any) -> np.ndarray:
    """Tokens per text with special tokens and WITHOUT truncation (what the model would need)."""
    if not len(texts):
        return np.zeros(0, dtype=int)
    with _quiet_tokenizer():
        enc = tokenizer(list(texts), truncation=False, padding=False, add_special_tokens=True,
                        return_attention_mask=False, return_token_type_ids=False)
    return np.asarray([len(ids) for ids in enc["input_ids"]], dtype=int)


def lengths(splits: Splits, tokenizer: Any) -> pd.DataFrame:
    """One row per example: split, class name, words (whitespace) and tokens (untruncated)."""
    parts = []
    for name, frame in _frames(splits).items():
        texts = frame["text"].tolist()
        parts.append(pd.DataFrame({
            "split": name,
            "class": [splits.labels[i] for i in frame["label"]],
            "words": [len(t.split()) for t in texts],
            "tokens": token_lengths(texts, tokenizer),
        }))
    return pd.concat(parts, ignore_index=True)


def length_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Median, 95th percentile and maximum of words and tokens per split."""
    grouped = table.groupby("split", sort=False)
    out = pd.DataFrame({
        "median_words": grouped["words"].median(), "p95_words": grouped["words"].quantile(0.95),
        "max_words": grouped["words"].max(), "median_tokens": grouped["tokens"].median(),
        "p95_tokens": grouped["tokens"].quantile(0.95), "max_tokens": grouped["tokens"].max(),
    })
    return out.reindex([s for s in SPLITS if s in out.index])


def truncation(table: pd.DataFrame, max_length: int) -> pd.DataFrame:
    """Per split: how many examples ``max_length`` cuts, and how many tokens it drops."""
    if max_length <= 0:
        raise ValueError(f"max_length must be positive; got {max_length}.")
    rows = {}
    for name, part in table.groupby("split", sort=False):
        tokens = part["tokens"].to_numpy()
        lost = np.clip(tokens - max_length, 0, None)
        rows[name] = {"examples": int(len(tokens)), "truncated": int((tokens > max_length).sum()),
                      "truncated_share": float((tokens > max_length).mean()) if len(tokens) else 0.0,
                      "tokens": int(tokens.sum()), "tokens_lost": int(lost.sum()),
                      "tokens_lost_share": float(lost.sum() / tokens.sum()) if tokens.sum() else 0.0}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "split"
    return out.reindex([s for s in SPLITS if s in out.index])


def examples_per_class(frame: pd.DataFrame, names: Sequence[str], n: int = 2, seed: int = 0,
                       width: int = 160) -> pd.DataFrame:
    """``n`` random examples of each of the classes ``names`` (texts shortened to ``width`` characters)."""
    rows = []
    for label, name in enumerate(names):
        part = frame[frame["label"] == label]
        for text in part.sample(min(n, len(part)), random_state=seed)["text"]:
            rows.append({"class": name, "text": text if len(text) <= width else text[: width - 1].rstrip() + "…"})
    return pd.DataFrame(rows, columns=["class", "text"])


def text_key(text: str) -> str:
    """Duplicate key: case and whitespace do not make two news items different."""
    return _SPACES.sub(" ", text.lower()).strip()


def duplicates(splits: Splits, max_examples: int = 5) -> dict[str, Any]:
    """Exact duplicates (after :func:`text_key`) within each split and across splits.

    Train/test overlap is what matters most: an overlapping test example is partly a memory
    test. Validation is carved from train, so train+validation is compared with test.
    """
    keys = {name: frame["text"].map(text_key) for name, frame in _frames(splits).items()}
    within = {name: int(k.duplicated().sum()) for name, k in keys.items()}
    seen_train = set(keys["train"]) | set(keys["validation"])
    test_overlap = keys["test"].isin(seen_train)
    val_overlap = keys["validation"].isin(set(keys["train"]))
    conflicting = _conflicting_labels(splits)
    examples = splits.test.loc[test_overlap.to_numpy(), "text"].head(max_examples).tolist()
    return {"within_split": within, "train_test_overlap": int(test_overlap.sum()),
            "train_test_overlap_share": float(test_overlap.mean()) if len(test_overlap) else 0.0,
            "train_validation_overlap": int(val_overlap.sum()), "conflicting_labels": conflicting,
            "overlap_examples": examples}


def duplicate_table(dupes: dict[str, Any]) -> pd.DataFrame:
    """The duplicate/overlap counts of :func:`duplicates` as a two-column table."""
    rows = [(f"duplicates within {name}", n) for name, n in dupes["within_split"].items()]
    rows += [("test texts also in train or validation", dupes["train_test_overlap"]),
             ("validation texts also in train", dupes["train_validation_overlap"]),
             ("texts with conflicting labels", dupes["conflicting_labels"])]
    return pd.DataFrame(rows, columns=["check", "examples"]).set_index("check")


def _conflicting_labels(splits: Splits) -> int:
    """Texts that occur with more than one label anywhere (label noise the model cannot fix)."""
    frame = pd.concat(_frames(splits).values(), ignore_index=True)
    per_text = frame.assign(key=frame["text"].map(text_key)).groupby("key")["label"].nunique()
    return int((per_text > 1).sum())


def summary(splits: Splits, balance: pd.DataFrame, table: pd.DataFrame, cut: pd.DataFrame,
            dupes: dict[str, Any], max_length: int) -> dict[str, Any]:
    """The exploration's findings as plain JSON (results/<profile>/exploration.json)."""
    stats = length_summary(table)
    return {
        "source": splits.source, "sizes": splits.sizes(), "max_length": int(max_length),
        "task": splits.task.to_dict(),
        "class_counts": {name: {c: int(balance.at[c, name]) for c in splits.labels} for name in SPLITS},
        "lengths": {s: {k: float(v) for k, v in stats.loc[s].items()} for s in stats.index},
        "truncation": {s: {k: (float(v) if "share" in k else int(v)) for k, v in cut.loc[s].items()}
                       for s in cut.index},
        "duplicates": dupes,
    }
