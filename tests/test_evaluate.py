"""Evaluation: metrics agree with scikit-learn, confusion orientation, calibration, mistakes, prediction order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from lora_agnews.core import evaluate
from lora_agnews.core.tasks.agnews import LABELS
from lora_agnews.core.tokens import TokenizedDataset

Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
Y_PRED = np.array([0, 1, 0, 1, 1, 2, 3, 0, 2, 3, 3, 1])


def test_metrics_match_sklearn() -> None:
    m = evaluate.compute_metrics(Y_TRUE, Y_PRED, names=LABELS)
    assert m["accuracy"] == pytest.approx(accuracy_score(Y_TRUE, Y_PRED)) == pytest.approx(8 / 12)
    assert m["macro_precision"] == pytest.approx(precision_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["macro_recall"] == pytest.approx(recall_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    per_f1 = f1_score(Y_TRUE, Y_PRED, average=None)
    for i, name in enumerate(LABELS):
        assert m["per_class"][name]["f1"] == pytest.approx(per_f1[i])
    assert m["n_eval"] == 12 and m["labels"] == list(LABELS)


def test_hand_computed_values() -> None:
    m = evaluate.compute_metrics(Y_TRUE, Y_PRED, names=LABELS)
    world = m["per_class"]["World"]
    assert world["precision"] == pytest.approx(2 / 3)  # predicted World: rows 0, 2, 7; 7 is Business
    assert world["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["Sports"]["precision"] == pytest.approx(2 / 4)
    assert m["per_class"]["Sports"]["recall"] == pytest.approx(1.0)


def test_per_class_support() -> None:
    m = evaluate.compute_metrics(Y_TRUE, Y_PRED, names=LABELS)
    assert [m["per_class"][name]["support"] for name in LABELS] == [3, 2, 4, 3]
    assert sum(sum(row) for row in m["confusion_matrix"]) == 12


def test_confusion_matrix_rows_are_true_labels() -> None:
    n = 7
    m = evaluate.compute_metrics(np.zeros(n, dtype=int), np.ones(n, dtype=int), names=LABELS)
    cm = np.asarray(m["confusion_matrix"])
    assert cm.shape == (4, 4)  # all four classes, even those absent from the data
    assert cm[0][1] == n and cm.sum() == n
    assert m["accuracy"] == 0.0
    assert m["per_class"]["Business"]["support"] == 0


def test_confusion_matrix_counts() -> None:
    cm = np.asarray(evaluate.compute_metrics(Y_TRUE, Y_PRED, names=LABELS)["confusion_matrix"])
    assert cm.sum(axis=1).tolist() == [3, 2, 4, 3]  # row sums: true class sizes
    assert cm.sum(axis=0).tolist() == [3, 4, 2, 3]  # column sums: predicted class sizes
    assert cm[2][3] == 1 and cm[2][0] == 1 and cm[3][1] == 1


def calibrated_probs(conf: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` predictions of confidence ``conf`` on class 0, right exactly a ``conf`` share of the time."""
    rest = (1.0 - conf) / 3
    probs = np.tile([conf, rest, rest, rest], (n, 1))
    labels = np.zeros(n, dtype=int)
    wrong = np.random.default_rng(seed).permutation(n)[: round(n * (1 - conf))]
    labels[wrong] = 1
    return probs, labels


def test_ece_of_calibrated_probabilities_is_zero() -> None:
    parts = [calibrated_probs(c, 100, seed=i) for i, c in enumerate((0.5, 0.7, 0.9))]
    probs = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    cal = evaluate.expected_calibration_error(probs, labels)
    assert cal["ece"] == pytest.approx(0.0, abs=1e-9)
    assert sum(b["count"] for b in cal["bins"]) == 300
    assert len(cal["bins"]) == cal["n_bins"] == 15


def test_ece_of_overconfident_probabilities() -> None:
    _, labels = calibrated_probs(0.6, 200)
    probs = np.tile([0.99, 0.01 / 3, 0.01 / 3, 0.01 / 3], (200, 1))  # 99% sure, right 60% of the time
    cal = evaluate.expected_calibration_error(probs, labels)
    assert cal["ece"] == pytest.approx(0.39, abs=1e-9)
    (full,) = [b for b in cal["bins"] if b["count"]]
    assert full["accuracy"] == pytest.approx(0.6) and full["confidence"] == pytest.approx(0.99)


def test_compute_metrics_with_probabilities_adds_calibration_and_nll() -> None:
    probs, labels = calibrated_probs(0.8, 50)
    m = evaluate.compute_metrics(labels, probs.argmax(axis=1), probs, names=LABELS)
    assert m["ece"] == pytest.approx(0.0, abs=1e-9)
    expected_nll = -np.mean(np.log(probs[np.arange(50), labels]))
    assert m["nll"] == pytest.approx(expected_nll)
    assert "calibration" in m and "bins" in m["calibration"]


def test_softmax() -> None:
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [1000.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    p = evaluate.softmax(logits)
    assert np.allclose(p.sum(axis=1), 1.0) and np.isfinite(p).all()
    assert p[0] == pytest.approx([0.25] * 4) and p[1, 0] == pytest.approx(1.0)
    assert np.allclose(p[2], torch.softmax(torch.tensor(logits[2]), 0).numpy())


def test_most_confident_mistakes_order() -> None:
    texts = ["right", "wrong 0.6", "wrong 0.9", "wrong 0.7", "right too"]
    labels = [0, 0, 1, 2, 3]
    probs = np.array([[0.9, 0.05, 0.03, 0.02],
                      [0.2, 0.6, 0.1, 0.1],
                      [0.9, 0.05, 0.03, 0.02],
                      [0.1, 0.1, 0.1, 0.7],
                      [0.1, 0.1, 0.1, 0.7]])
    out = evaluate.most_confident_mistakes(texts, labels, probs, LABELS, k=10)
    assert [m["text"] for m in out] == ["wrong 0.9", "wrong 0.7", "wrong 0.6"]
    assert out[0] == {"text": "wrong 0.9", "true": "Sports", "predicted": "World", "confidence": pytest.approx(0.9)}
    assert len(evaluate.most_confident_mistakes(texts, labels, probs, LABELS, k=2)) == 2


class FakeClassifier(torch.nn.Module):
    """Logits from the token ids: class = number of real tokens mod 4 (so padding must be masked)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        n = attention_mask.sum(dim=1)
        logits = torch.nn.functional.one_hot(n % 4, 4).float() * 5 + self.weight
        return type("Out", (), {"logits": logits})()


def test_predict_logits_keeps_dataset_order() -> None:
    lengths = [5, 1, 3, 2, 7, 4, 6, 2]
    dataset = TokenizedDataset([[9] * n for n in lengths], [n % 4 for n in lengths])
    logits = evaluate.predict_logits(FakeClassifier(), dataset, pad_token_id=0, batch_size=3)
    assert logits.shape == (8, 4)
    assert logits.argmax(axis=1).tolist() == [n % 4 for n in lengths]
    metrics, _ = evaluate.evaluate_model(FakeClassifier(), dataset, 0, 3, torch.device("cpu"), "fp32", names=LABELS)
    assert metrics["accuracy"] == 1.0 and metrics["n_eval"] == 8
