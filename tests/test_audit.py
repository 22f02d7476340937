"""The audit: a saved model is re-scored from its adapter alone and must give the logits its run recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lora_agnews import audit, config
from lora_agnews.artifacts import read_json


def test_compare_requires_every_label_and_the_tolerance() -> None:
    labels = np.array([0, 1, 2, 1])
    recorded = np.eye(3)[[0, 1, 2, 2]] * 5.0
    same = audit.compare("r", recorded, recorded + 1e-6, labels, "fp32")
    assert same.reproduced and same.label_agreement == 1.0 and same.recorded_accuracy == 0.75
    drift = audit.compare("r", recorded, recorded + 1e-3, labels, "fp32")
    assert not drift.reproduced and drift.label_agreement == 1.0  # within bf16's tolerance, not fp32's
    assert audit.compare("r", recorded, recorded + 1e-3, labels, "bf16").reproduced
    flipped = recorded.copy()
    flipped[3] = np.eye(3)[1] * 5.0
    bad = audit.compare("runs/x", recorded, flipped, labels, "bf16")
    assert not bad.reproduced and bad.reproduced_accuracy == 1.0 and "runs/x: recorded 75.00%, reloaded 100.00%" in bad.line()
    with pytest.raises(audit.AuditError, match="test rows changed"):
        audit.compare("r", recorded, recorded[:2], labels, "fp32")


def test_a_smoke_run_reproduces_and_a_changed_record_does_not(isolated_outputs: Path) -> None:
    from lora_agnews import paths
    from lora_agnews.train import train

    cfg = config.load("smoke", {"epochs": 1.0, "max_train_samples": 64, "max_eval_samples": 64})
    run_dir = paths.runs_dir("smoke") / "main"
    train(cfg, run_dir)
    record = audit.audit_profile("smoke")
    assert record["runs"] == 1 and record["all_reproduced"] and record["checks"][0]["run"] == "runs/main"
    saved = dict(np.load(run_dir / "test_predictions.npz"))
    saved["logits"] = saved["logits"][:, ::-1].copy()
    np.savez(run_dir / "test_predictions.npz", **saved)
    with pytest.raises(audit.AuditError, match="1 of 1 saved models"):
        audit.audit_profile("smoke")
    assert read_json(paths.results_dir("smoke") / audit.AUDIT_FILE)["reproduced"] == 0
