"""The audit: a saved model is re-scored from its adapter alone and must give the logits its run recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lora_agnews.reporting import audit_text
from lora_agnews.studies import audit, baselines
from lora_agnews.core import config
from lora_agnews.core.paths import read_json, write_json


def test_a_smoke_run_reproduces_and_a_changed_record_does_not(isolated_outputs: Path) -> None:
    from lora_agnews.core import paths
    from lora_agnews.core.train import train

    cfg = config.load("smoke", {"epochs": 1.0, "max_train_samples": 64, "max_eval_samples": 64})
    run_dir = paths.runs_dir("smoke") / "main"
    train(cfg, run_dir)
    with np.load(run_dir / "test_predictions.npz") as saved:  # notebook 03's yardstick, fitted on the run's rows
        reference = baselines.tfidf_reference(cfg, saved["logits"].argmax(1) == saved["labels"], saved["labels"])
    write_json(reference, paths.results_dir("smoke") / audit.REFERENCE_FILE)
    record = audit.audit_profile("smoke")
    assert record["runs"] == 1 and record["all_reproduced"] and record["checks"][0]["run"] == "runs/main"
    assert record["baseline"]["reproduced"] and record["baseline"]["refitted"]["accuracy"] == reference["accuracy"]
    assert "TF-IDF baseline, refitted" in audit_text.summary(record)
    write_json(reference | {"accuracy": reference["accuracy"] + 0.01}, paths.results_dir("smoke") / audit.REFERENCE_FILE)
    with pytest.raises(audit.AuditError, match="^the refitted TF-IDF baseline does not give its recorded numbers:\nTF-IDF baseline: recorded accuracy"):
        audit.audit_profile("smoke")
    write_json(reference, paths.results_dir("smoke") / audit.REFERENCE_FILE)
    saved = dict(np.load(run_dir / "test_predictions.npz"))
    saved["logits"] = saved["logits"][:, ::-1].copy()
    np.savez(run_dir / "test_predictions.npz", **saved)
    with pytest.raises(audit.AuditError, match="1 of 1 saved models"):
        audit.audit_profile("smoke")
    assert read_json(paths.results_dir("smoke") / audit.AUDIT_FILE)["reproduced"] == 0


def _task(root: Path, name: str, labels: list[str], n_train: int = 48, n_test: int = 24) -> Path:
    """A ``label,text`` task directory whose texts name their label."""
    import csv

    directory = root / name
    directory.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        with open(directory / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "text"])
            for i in range(n):
                label = labels[i % len(labels)]
                writer.writerow([label, f"{name}{label}{i % 3} the news of {name}{label}{(i + 1) % 3} today"])
    (directory / "classes.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return directory


def _small_study(root: Path) -> None:
    """Two small tasks, one merged combination, the floor and the multi-task model: profile smoke's study."""
    from lora_agnews.studies import merging
    from lora_agnews.core import paths
    from lora_agnews.studies import merging_study as study_mod

    # not in alphabetical order, and a merge that draws random masks: the audit must merge in the study's order
    tasks = [_task(root, "topic", ["art", "sci", "war"]), _task(root, "mood", ["neg", "pos"])]
    study_mod.run_study(config.load("smoke", {"epochs": 1.0}), [str(t) for t in tasks], paths.runs_dir("smoke") / "merging",
                        [merging.make_combination("dare_linear", density=0.5)], results_dir=paths.results_dir("smoke"))


def test_the_study_floor_and_multitask_model_are_rebuilt_and_a_changed_tensor_is_named(tmp_path: Path) -> None:
    """A smoke-sized merging study: its head-only floors and multi-task model, rebuilt from their records and saved
    tensors, give their recorded logits; a changed multi-task tensor fails the audit, naming the model."""
    from safetensors.torch import load_file, save_file

    from lora_agnews.studies import merging
    from lora_agnews.core import paths
    from lora_agnews.studies.multitask import TRAINABLE_FILE

    _small_study(tmp_path)
    record = audit.audit_profile("smoke")
    names = [c["run"] for c in record["checks"]]
    for task in ("mood", "topic"):
        assert f"merging: {task} / {merging.HEAD_ONLY}" in names and f"merging: {task} / {merging.MULTITASK}" in names
    assert record["all_reproduced"] and record["runs"] == 2 + 2 + 2 + 2  # own runs, merged, floors, multi-task
    assert record["baseline"] is None and not any("multi-task" in line for line in record["not_audited"])

    multitask = paths.runs_dir("smoke") / "merging" / "multitask"
    old = {k: v for k, v in read_json(multitask / "multitask.json").items() if k != "configs"}
    write_json(old, multitask / "multitask.json")  # a record written before the configurations were kept
    assert all(c.reproduced for c in audit.audit_multitask(multitask))  # rebuilt from its run keys
    tensors = multitask / TRAINABLE_FILE
    saved = load_file(str(tensors))
    head = next(n for n in saved if n.startswith("heads.1."))
    saved[head] = saved[head] + 1.0
    save_file(saved, str(tensors))
    with pytest.raises(audit.AuditError, match=f"merging: mood / {merging.MULTITASK}: does not reproduce"):
        audit.audit_profile("smoke")
    failed = [c["run"] for c in read_json(paths.results_dir("smoke") / audit.AUDIT_FILE)["checks"] if not c["reproduced"]]
    assert failed == [f"merging: mood / {merging.MULTITASK}"]  # heads.1: the second task


@pytest.mark.slow  # a fresh process: `make test-slow`
def test_the_audit_command_reproduces_a_study_in_a_fresh_process(tmp_path: Path) -> None:
    """What the pipeline runs: ``python -m lora_agnews audit`` in its own interpreter rebuilds every model of a study
    (own adapters, merged combinations, floors, multi-task model) and writes its record."""
    from lora_agnews.core import paths

    _small_study(tmp_path)
    done = subprocess.run([sys.executable, "-m", "lora_agnews", "audit", "--profile", "smoke"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    record = read_json(paths.results_dir("smoke") / audit.AUDIT_FILE)
    assert record["all_reproduced"] and record["reproduced"] == record["runs"] == 8
