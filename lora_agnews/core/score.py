"""The model a run's test split is scored with, and a saved run scored again from its adapter alone.

One path for both, so "the saved artifact reproduces the run" (the audit, the evaluation chapter) means the
same wherever it is stated. May import ``paths``, ``config``, ``dataset``, ``tokens``, the model's modules,
``evaluate`` and ``adapter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .adapter import load_adapter
from .build import MergeError, merge
from .config import Config
from .dataset import Splits, load_splits
from .evaluate import predict_logits
from .paths import say
from .precision import resolve_precision
from .tokens import encode


def scoring_model(model: torch.nn.Module, cfg: Config, quiet: bool = False) -> torch.nn.Module:
    """The model a run's test split is scored with: LoRA merged into the base where ``merge_eval`` allows.

    The audit scores a reloaded adapter through this same function, so a run and its audit compute alike.
    """
    if cfg.merge_eval and cfg.quantize != "none":
        if not quiet:
            say(f"note: scoring on the {cfg.quantize} base as trained (merging would dequantize it; the saved "
                f"adapter rebuilds this quantized base)")
    elif cfg.merge_eval:
        try:
            return merge(model, cfg.method)
        except MergeError as exc:
            if not quiet:
                say(f"note: scoring unmerged ({exc})")
    return model


@dataclass(frozen=True)
class Rescore:
    """A complete run's test split scored again from its saved adapter alone, as the run scored it."""

    cfg: Config
    splits: Splits
    logits: np.ndarray
    labels: np.ndarray
    precision: str


def rescore(run_dir: Path | str, device: str | torch.device = "cpu", rows: np.ndarray | None = None) -> Rescore:
    """Rebuild the run's model from ``run_dir/adapter`` and score its test rows through ``scoring_model``.

    ``rows``: positions of the test rows to score (all by default; the audit of a restore scores a sample). The
    precision is the run's, or the one a :func:`~lora_agnews.core.precision.scoring_in` block around the call chose.
    """
    dev = torch.device(device)
    model, tokenizer, cfg = load_adapter(Path(run_dir) / "adapter", dev)
    splits = load_splits(cfg)
    frame = splits.test if rows is None else splits.test.iloc[np.asarray(rows)]
    test = encode(frame, tokenizer, cfg.max_length, num_labels=splits.label_width)
    precision = resolve_precision(cfg, dev)
    model = scoring_model(model, cfg, quiet=True).to(dev).eval()
    logits = predict_logits(model, test, tokenizer.pad_token_id, cfg.eval_batch_size, dev, precision,
                            multiple=cfg.pad_multiple)
    return Rescore(cfg, splits, logits, np.asarray(test.labels), precision)
