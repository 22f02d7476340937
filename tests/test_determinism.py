"""Same seed and profile: identical metrics on CPU, twice; another seed: different numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lora_agnews.core import config, runs
from lora_agnews.core.paths import read_json
from lora_agnews.core.train import train

# Wall-clock and host facts differ between identical runs by nature; everything else must not.
NOT_NUMBERS = {"train_seconds", "eval_seconds", "validation_seconds", "device", "process_peak_rss_bytes",
               "process_rss_bytes"}


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _numbers(run_dir: Path) -> dict[str, Any]:
    metrics = read_json(run_dir / runs.METRICS_FILE)
    return {k: v for k, v in metrics.items() if k not in NOT_NUMBERS}


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_same_seed_same_numbers_other_seed_differs(tmp_path: Path, one_thread: None) -> None:
    cfg = config.load("smoke", {"epochs": 2})
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    train(cfg.replace(seed=cfg.seed + 1), tmp_path / "c")

    a, b, c = (_numbers(tmp_path / n) for n in "abc")
    assert a == b  # every metric, the confusion matrix, calibration bins, history-derived fields
    la, lb, lc = (np.load(tmp_path / n / "test_predictions.npz")["logits"] for n in "abc")
    np.testing.assert_array_equal(la, lb)
    history = [_strip_runtime(read_json(tmp_path / n / "history.json")) for n in "ab"]
    assert history[0] == history[1]  # every logged loss and validation accuracy

    assert not np.allclose(la, lc), "a different seed must give a different model"
    assert a["config"]["seed"] != c["config"]["seed"]
    assert (a["nll"], a["accuracy"]) != (c["nll"], c["accuracy"])


def _strip_runtime(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if "runtime" not in k and "per_second" not in k} for row in history]
