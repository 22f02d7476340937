"""Training: one smoke run (tiny random RoBERTa, shipped sample) that must actually learn.

One training run for the whole module (module-scoped fixture, ~10 s on a free CPU); every test
reads what it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lora_agnews.core import config, train
from lora_agnews.core.budget import BudgetError, count_trainable
from lora_agnews.core.tasks.agnews import LABELS
from conftest import sample_rows


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("smoke_run")
    with pytest.MonkeyPatch.context() as mp:  # the autouse isolation fixture is per test; this run is per module
        for name in ("RESULTS", "BUILD", "CACHE"):
            mp.setenv(f"LORA_AGNEWS_{name}", str(root / name.lower()))
        cfg = config.load("smoke")
        out = root / "run"
        metrics = train.train(cfg, out)
    return SimpleNamespace(cfg=cfg, out=out, metrics=metrics, root=root)


def read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_metrics_file_has_required_fields(smoke_run) -> None:
    on_disk = read(smoke_run.out / "metrics.json")
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "confusion_matrix", "n_eval",
                "trainable_params", "config", "per_class", "best_validation_accuracy"):
        assert key in on_disk, key
    assert on_disk["accuracy"] == pytest.approx(smoke_run.metrics["accuracy"])
    n_train, n_test = sample_rows()
    assert on_disk["n_eval"] == n_test
    assert np.asarray(on_disk["confusion_matrix"]).shape == (4, 4)
    assert np.asarray(on_disk["confusion_matrix"]).sum() == n_test
    assert on_disk["config"] == smoke_run.cfg.to_dict()
    assert on_disk["trainable_params"] == count_trainable(smoke_run.cfg)["total"]
    assert on_disk["trainable_params"] <= smoke_run.cfg.budget
    n_val = round(0.1 * n_train)  # the smoke profile holds out 10%
    assert on_disk["split_sizes"] == {"train": n_train - n_val, "validation": n_val, "test": n_test}


def test_learns_well_above_chance(smoke_run) -> None:
    m = smoke_run.metrics
    assert m["accuracy"] > 0.6, m["accuracy"]  # chance is 0.25
    assert m["macro_f1"] > 0.5
    assert m["best_validation_accuracy"] > 0.6


def test_training_loss_falls(smoke_run) -> None:
    history = read(smoke_run.out / "history.json")
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 5
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_predictions_file_matches_metrics(smoke_run) -> None:
    with np.load(smoke_run.out / "test_predictions.npz") as arrays:
        logits, labels = arrays["logits"], arrays["labels"]
    n_test = sample_rows()[1]
    assert logits.shape == (n_test, len(LABELS)) and labels.shape == (n_test,)
    assert np.bincount(labels).tolist() == [n_test // 4] * 4  # the sample is balanced
    assert float((logits.argmax(axis=1) == labels).mean()) == pytest.approx(smoke_run.metrics["accuracy"])


def test_checkpoints_and_adapter_exist(smoke_run) -> None:
    checkpoints = sorted((smoke_run.out / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    for ckpt in checkpoints:
        assert (ckpt / "adapter_model.safetensors").is_file()
        assert (ckpt / "trainer_state.json").is_file()
    assert (smoke_run.out / "adapter" / "adapter_model.safetensors").is_file()
    assert read(smoke_run.out / "run.json")["status"] == "complete"


def test_best_validation_checkpoint_is_restored(smoke_run) -> None:
    from safetensors.numpy import load_file

    history = read(smoke_run.out / "history.json")
    evals = [(e["eval_accuracy"], e["step"]) for e in history if "eval_accuracy" in e]
    assert len(evals) == smoke_run.cfg.epochs * smoke_run.cfg.evals_per_epoch
    best_acc = max(acc for acc, _ in evals)
    first_best_step = min(step for acc, step in evals if acc == best_acc)
    m = smoke_run.metrics
    assert m["best_validation_accuracy"] == pytest.approx(best_acc)
    assert m["best_checkpoint"] == f"checkpoint-{first_best_step}"
    # the saved adapter holds the best checkpoint's weights, not the last step's
    best = load_file(str(smoke_run.out / "checkpoints" / m["best_checkpoint"] / "adapter_model.safetensors"))
    saved = load_file(str(smoke_run.out / "adapter" / "adapter_model.safetensors"))
    assert set(best) == set(saved)
    for key in best:
        np.testing.assert_array_equal(best[key], saved[key], err_msg=key)


def test_complete_run_is_reused_not_retrained(smoke_run) -> None:
    metrics_file = smoke_run.out / "metrics.json"
    before = metrics_file.stat().st_mtime_ns
    again = train.train(smoke_run.cfg, smoke_run.out)
    assert again["accuracy"] == smoke_run.metrics["accuracy"]
    assert metrics_file.stat().st_mtime_ns == before


def test_over_budget_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    cfg = config.load("smoke", {"budget": 1000})
    with pytest.raises(BudgetError, match="over the budget of 1,000"):
        train.train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "run.json").exists()
