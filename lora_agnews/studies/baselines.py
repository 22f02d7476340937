"""A reference that needs no encoder: TF-IDF + logistic regression on exactly the rows the LoRA run saw.

An accuracy means little without a yardstick. On AG News, bag-of-words models are strong (about 88%
with 10k rows), so "LoRA reaches 89%" only says something next to what the same training rows give
a linear model on word and bigram counts. Fitted in seconds on a CPU; compared with the LoRA run on
the same test rows by a paired bootstrap interval and McNemar's test.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .comparison import Arm, compare
from ..core.config import Config
from ..core.dataset import Splits, load_splits
from ..core.evaluate import compute_metrics


def tfidf_predictions(splits: Splits, seed: int) -> np.ndarray:
    """Test-split predictions of TF-IDF (1-2 grams, sublinear tf) + logistic regression fitted on ``splits.train``.

    The settings are the usual strong bag-of-words baseline; nothing is tuned on the test split.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, strip_accents="unicode"),
                          LogisticRegression(C=10.0, max_iter=2000, random_state=seed))
    model.fit(splits.train["text"].tolist(), splits.train["label"].to_numpy())
    return np.asarray(model.predict(splits.test["text"].tolist()))


def tfidf_reference(cfg: Config, lora_correct: np.ndarray, lora_labels: np.ndarray,
                    splits: Splits | None = None) -> dict[str, Any]:
    """The reference's metrics on the run's test rows, and the LoRA run's paired advantage over it.

    ``lora_correct`` is the LoRA run's 0/1 correctness on the rows labelled ``lora_labels``; they must be
    the reference's test rows in the same order, else the comparison is refused.
    """
    splits = splits or load_splits(cfg)
    labels = splits.test["label"].to_numpy()
    predicted = tfidf_predictions(splits, cfg.seed)
    metrics = compute_metrics(labels, predicted, names=splits.labels)
    lora, tfidf = compare([Arm("lora", [np.asarray(lora_correct, dtype=bool)], [np.asarray(lora_labels)]),
                           Arm("tfidf", [predicted == labels], [labels])], "tfidf", cfg.seed, "the TF-IDF reference")["arms"]
    return {
        "name": "TF-IDF (1-2 grams) + logistic regression", "n_train": len(splits.train), "n_eval": len(labels),
        "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "bootstrap_ci": tfidf["bootstrap_ci"],
        "lora_accuracy": lora["mean"],
        "difference": {k: lora["vs_reference"][k] for k in ("mean", "bootstrap_ci")},
        "mcnemar": lora["vs_reference"]["mcnemar_per_seed"][0],
    }
