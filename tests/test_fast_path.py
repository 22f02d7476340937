"""The GPU fast path's CPU side (issue 12): bucketed batch widths and torch.compile train the same model.

Bucketing only adds padding that the attention mask hides, and compilation only fuses the same
operations, so both must reproduce the eager path's metrics: the same accuracy and confusion matrix,
the same validation accuracy, and test logits within 1e-4 (float re-association in fused kernels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lora_agnews.core import config, train
from lora_agnews.core.paths import read_json
from lora_agnews.core.tokens import PadCollator
from lora_agnews.core.evaluate import pad_multiple

SHORT = {"epochs": 1, "max_train_samples": 128, "max_val_samples": 32, "max_eval_samples": 64}
TOLERANCE = 1e-4  # logits; accuracy and confusion matrix must be equal


def test_buckets_round_widths_up_and_mask_the_padding() -> None:
    collate = PadCollator(pad_token_id=1, multiple=32)
    batch = collate([{"input_ids": [0, 5, 6, 2], "labels": 1}, {"input_ids": list(range(40)), "labels": 0}])
    assert batch["input_ids"].shape == (2, 64)
    assert batch["attention_mask"].sum(dim=1).tolist() == [4, 40]
    assert (batch["input_ids"][0, 4:] == 1).all()
    widths = {PadCollator(1, 32)([{"input_ids": [3] * n, "labels": 0}])["input_ids"].shape[1] for n in range(1, 129)}
    assert widths == {32, 64, 96, 128}, "max_length 128 gives four shapes"
    assert pad_multiple(0, torch.device("cpu")) == 1 and pad_multiple(0, torch.device("cuda")) == 8
    assert pad_multiple(32, torch.device("cpu")) == 32


def test_pad_multiple_is_checked_and_keyed() -> None:
    with pytest.raises(config.ConfigError, match="pad_multiple"):
        config.load("smoke", {"pad_multiple": -1})
    cfg = config.load("smoke")
    assert "pad_multiple" not in cfg.run_key(), "runs recorded before the key existed are still reused"
    assert cfg.replace(pad_multiple=32).run_key()["pad_multiple"] == 32


def _same_model(a: Path, b: Path) -> None:
    got, want = read_json(a / "metrics.json"), read_json(b / "metrics.json")
    assert got["accuracy"] == want["accuracy"] and got["confusion_matrix"] == want["confusion_matrix"]
    assert got["best_validation_accuracy"] == pytest.approx(want["best_validation_accuracy"])
    np.testing.assert_allclose(np.load(a / "test_predictions.npz")["logits"],
                               np.load(b / "test_predictions.npz")["logits"], rtol=TOLERANCE, atol=TOLERANCE)


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fast") / "eager"
    train.train(config.load("smoke", SHORT), out)
    return out


def test_bucketed_widths_train_the_same_model(eager: Path, tmp_path: Path) -> None:
    train.train(config.load("smoke", {**SHORT, "pad_multiple": 32}), tmp_path / "pad32")
    _same_model(tmp_path / "pad32", eager)


@pytest.mark.slow
def test_compiled_and_bucketed_training_matches_eager(eager: Path, tmp_path: Path) -> None:
    """torch.compile through the Trainer (inductor on CPU): the first compilation takes a minute or two."""
    import shutil

    pytest.importorskip("torch._inductor")
    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("torch.compile on a CPU (inductor) needs a C++ compiler; install g++ (apt-get install g++)")
    train.train(config.load("smoke", {**SHORT, "compile": True, "pad_multiple": 32}), tmp_path / "compiled")
    _same_model(tmp_path / "compiled", eager)
