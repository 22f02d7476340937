"""Distillation: a teacher logits file from a trained classifier, and a student trained on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lora_agnews import cli
from lora_agnews.core import config
from lora_agnews.core.distill import DistillError, teacher_logits_for
from lora_agnews.core.tasks.agnews import LABELS, load_raw
from lora_agnews.core.train import train


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(config.load("smoke", {"epochs": 3}), out)
    return out / "adapter"


def test_logits_file_covers_training_texts_and_student_trains(teacher: Path, tmp_path: Path, capsys) -> None:
    logits_file = tmp_path / "teacher.npz"
    assert cli.main(["logits", "--profile", "smoke", "--teacher", str(teacher), "--out", str(logits_file)]) == 0
    assert "wrote teacher logits" in capsys.readouterr().out
    texts = load_raw("sample")[0]["text"].tolist()
    logits = teacher_logits_for(logits_file, texts[::-1], LABELS)  # aligned by text, not position
    with np.load(logits_file) as stored:
        assert np.allclose(logits[-1], stored["logits"][0])
    assert logits.shape == (len(texts), 4)
    # the teacher learned: its argmax agrees with the labels far above chance
    labels = load_raw("sample")[0]["label"].to_numpy()
    assert (teacher_logits_for(logits_file, texts, LABELS).argmax(1) == labels).mean() > 0.6

    student = config.load("smoke", {"epochs": 2, "distill_logits": str(logits_file), "distill_alpha": 0.7,
                                    "head": "linear", "lora_r": 4})
    metrics = train(student, tmp_path / "student")
    assert metrics["config"]["distill_logits"] == str(logits_file)
    assert metrics["accuracy"] > 0.4


def test_missing_texts_and_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "t.npz"
    np.savez(bad, texts=np.array(["a", "b"]), logits=np.zeros((2, 4), np.float32))
    with pytest.raises(DistillError, match="no teacher logits for 1 of 2"):
        teacher_logits_for(bad, ["a", "zzz"], LABELS)
    with pytest.raises(DistillError, match="does not exist"):
        teacher_logits_for(tmp_path / "nope.npz", ["a"], LABELS)
    np.savez(bad, texts=np.array(["a"]), logits=np.zeros((1, 3), np.float32))
    with pytest.raises(DistillError, match="shape"):
        teacher_logits_for(bad, ["a"], LABELS)
