"""Token ids for a frame's texts, the dataset that holds them, and the collator that pads each batch.

Ids are truncated but never padded to a fixed length: each batch is padded to its own longest sequence.
May import: ``paths`` and ``tasks.label_sets``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from . import paths
from .tasks.label_sets import multi_hot


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short digest of a tokenizer's vocabulary: part of the token cache's key."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha1(repr(sorted(vocab.items())[:2000]).encode() + str(len(vocab)).encode())
    return digest.hexdigest()[:12]


def tokenize(texts: Sequence[str], tokenizer: Any, max_length: int, cache: bool = True) -> list[list[int]]:
    """Token ids per text, truncated to ``max_length``, unpadded; cached on disk by content.

    Tokenising 120k texts costs seconds every run; the cache makes repeated runs (seeds,
    ablations, notebooks) start training at once.
    """
    key = hashlib.sha1()
    key.update(_tokenizer_fingerprint(tokenizer).encode())
    key.update(str(max_length).encode())
    for t in texts:
        key.update(t.encode("utf-8", "surrogatepass"))
        key.update(b"\0")
    cache_file = paths.cache_dir() / f"tokens-{key.hexdigest()[:20]}.pt"
    if cache and cache_file.is_file():
        try:
            return torch.load(cache_file)
        except Exception:  # a corrupt cache is only a cache
            pass
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False, return_token_type_ids=False)
    ids = [list(map(int, x)) for x in enc["input_ids"]]
    if cache:
        paths.atomic_torch_save(ids, cache_file)
    return ids


class TokenizedDataset(torch.utils.data.Dataset):
    """Token ids and labels; items are unpadded so the collator pads per batch."""

    def __init__(self, input_ids: list[list[int]], labels: Sequence[int], extra: dict[str, np.ndarray] | None = None):
        if len(input_ids) != len(labels):
            raise ValueError("input_ids and labels differ in length")
        self.input_ids = input_ids
        # one class id per example, or (multi-label) one float indicator row per example
        self.labels = [x if isinstance(x, list) else int(x) for x in labels]
        self.extra = extra or {}

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input_ids": self.input_ids[i], "labels": self.labels[i]}
        for name, values in self.extra.items():
            item[name] = values[i]
        return item


def encode(frame: pd.DataFrame, tokenizer: Any, max_length: int, extra: dict[str, np.ndarray] | None = None,
           num_labels: int = 0) -> TokenizedDataset:
    """Token ids and labels; with ``num_labels`` (a multi-label task) each label set becomes an indicator row."""
    labels = frame["label"].tolist()
    if num_labels:
        labels = multi_hot(labels, num_labels).tolist()
    return TokenizedDataset(tokenize(frame["text"].tolist(), tokenizer, max_length), labels, extra)


class PadCollator:
    """Dynamic padding: each batch is padded to its own longest sequence (times ``multiple``).

    A plain numpy fill; ``tokenizer.pad`` does the same through Python dict handling per
    example and costs more than the forward pass of the tiny test model. The fill is numpy,
    not per-row torch ops: 0.26 ms instead of 2.3 ms for 128 examples, which matters on a
    GPU where a whole training step takes ~10 ms and the Trainer collates in the main process.
    """

    def __init__(self, pad_token_id: int, multiple: int = 1):
        self.pad_token_id = int(pad_token_id)
        self.multiple = max(1, int(multiple))

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = np.fromiter((len(item["input_ids"]) for item in batch), dtype=np.int64, count=len(batch))
        width = -(-int(lengths.max()) // self.multiple) * self.multiple
        ids = np.full((len(batch), width), self.pad_token_id, dtype=np.int64)
        for row, item in enumerate(batch):
            ids[row, :lengths[row]] = item["input_ids"]
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
               "labels": _label_tensor([item["labels"] for item in batch])}
        for key in batch[0]:
            if key not in out:
                out[key] = torch.as_tensor(np.stack([np.asarray(item[key]) for item in batch]))
        return out


def _label_tensor(labels: list[Any]) -> torch.Tensor:
    """Class ids as long; indicator rows (multi-label) as float, the target BCE-with-logits takes."""
    multi = bool(labels) and isinstance(labels[0], list)
    return torch.as_tensor(labels, dtype=torch.float32 if multi else torch.long)
